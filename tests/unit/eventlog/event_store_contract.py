"""One contract for every EventStore; subclass it with a ``make_store`` fixture."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from eventlog.events import ApiKeyIssued, ApiKeyRevoked, CensusSnapshotTaken, ClientCreated
from eventlog.hashchain import GENESIS_HASH, chain_hash
from eventlog.records import EventStore

MakeStore = Callable[[], EventStore]


def created(n: int) -> ClientCreated:
    return ClientCreated(
        client_id=f"c{n:016x}", name=f"Client {n}", email=f"c{n}@example.com", tier="free"
    )


class EventStoreContract:
    """Behaviour every event store must show; backends differ only in make_store."""

    @pytest.fixture
    def store(self, make_store: MakeStore) -> EventStore:
        return make_store()

    def test_empty_store_has_genesis_head_and_verifies(self, store: EventStore) -> None:
        assert store.head().seq == 0 and store.head().hash == GENESIS_HASH
        report = store.verify_chain()
        assert report.ok and report.events == 0 and report.head_hash == GENESIS_HASH
        assert store.read() == []

    def test_append_numbers_and_links_events(self, store: EventStore) -> None:
        first = store.append([created(1), created(2)], actor="admin")
        second = store.append([created(3)], actor="scheduler")
        assert [e.seq for e in first + second] == [1, 2, 3]
        assert first[0].prev_hash == GENESIS_HASH
        assert first[1].prev_hash == first[0].hash
        assert second[0].prev_hash == first[1].hash
        assert second[0].actor == "scheduler"
        assert len({e.event_id for e in first + second}) == 3
        assert all(len(e.event_id) == 32 for e in first + second)
        assert store.head().seq == 3 and store.head().hash == second[0].hash

    def test_hash_is_sha256_over_prev_hash_and_recorded_fields(self, store: EventStore) -> None:
        (ev,) = store.append([created(1)], actor="admin", occurred_at="2025-01-01T00:00:00.000001Z")
        assert ev.occurred_at == "2025-01-01T00:00:00.000001Z"
        expected = chain_hash(
            GENESIS_HASH,
            seq=1,
            event_id=ev.event_id,
            type="client.created",
            schema_version=1,
            occurred_at=ev.occurred_at,
            actor="admin",
            client_id=ev.client_id,
            data={"name": "Client 1", "email": "c1@example.com", "tier": "free"},
        )
        assert ev.hash == expected

    def test_occurred_at_is_utc_iso_with_microseconds(self, store: EventStore) -> None:
        (ev,) = store.append([created(1)], actor="admin")
        assert len(ev.occurred_at) == 27 and ev.occurred_at.endswith("Z")
        assert ev.occurred_at[10] == "T" and ev.occurred_at[19] == "."

    def test_read_pages_and_filters(self, store: EventStore) -> None:
        for n in range(5):
            store.append([created(n)], actor="admin")
        store.append(
            [ApiKeyIssued(client_id=f"c{1:016x}", key_id="0" * 16, scopes=("read",))], "admin"
        )
        store.append([ApiKeyRevoked(client_id=f"c{1:016x}", key_id="0" * 16)], "admin")
        assert [e.seq for e in store.read(after_seq=2, limit=2)] == [3, 4]
        assert [e.seq for e in store.read(after_seq=6, limit=100)] == [7]
        mine = store.read(client_id=f"c{1:016x}")
        assert [e.type for e in mine] == ["client.created", "api_key.issued", "api_key.revoked"]
        assert [e.seq for e in store.read(type="api_key.revoked")] == [7]
        both = store.read(client_id=f"c{1:016x}", type="client.created")
        assert [e.seq for e in both] == [2]
        assert store.read(after_seq=7) == []

    def test_read_rejects_bad_arguments(self, store: EventStore) -> None:
        with pytest.raises(ValueError):
            store.read(after_seq=-1)
        with pytest.raises(ValueError):
            store.read(limit=0)
        with pytest.raises(ValueError):
            store.read(limit=1001)

    def test_append_rejects_missing_actor(self, store: EventStore) -> None:
        with pytest.raises(ValueError):
            store.append([created(1)], actor="")
        assert store.head().seq == 0

    def test_events_round_trip_to_typed_events(self, store: EventStore) -> None:
        issued = ApiKeyIssued(
            client_id="c0000000000000001", key_id="ab" * 8, scopes=("read", "manage"), label="ci"
        )
        census = CensusSnapshotTaken(
            archive="census/2025-01-01.jsonl.gz", sha256="f" * 64, clients=3
        )
        store.append([issued, census], actor="admin")
        read_back = [e.to_event() for e in store.read()]
        assert read_back == [issued, census]
        assert store.read()[1].client_id is None

    def test_many_appends_verify(self, store: EventStore) -> None:
        store.append([created(n) for n in range(1100)], actor="admin")
        for n in range(50):
            store.append([created(n)], actor="admin")
        report = store.verify_chain()
        assert report.ok, report.mismatches
        assert report.events == 1150
        assert report.head_hash == store.head().hash

    def test_outbox_holds_every_append_until_published(self, store: EventStore) -> None:
        store.append([created(1), created(2)], actor="admin")
        store.append([created(3)], actor="admin")
        assert [e.seq for e in store.pending_outbox()] == [1, 2, 3]
        assert [e.seq for e in store.pending_outbox(limit=2)] == [1, 2]
        store.mark_published([1, 2])
        assert [e.seq for e in store.pending_outbox()] == [3]
        store.mark_published([])
        assert [e.seq for e in store.pending_outbox()] == [3]
        # Publishing removes outbox rows only; the log itself is untouched.
        assert len(store.read()) == 3 and store.verify_chain().ok

    def test_client_events_are_one_clients_up_to_a_time_in_seq_order(
        self, store: EventStore
    ) -> None:
        a, b = created(1), created(2)
        store.append([a, b], actor="admin", occurred_at="2025-01-01T00:00:00.000000Z")
        key = ApiKeyIssued(client_id=a.client_id, key_id="a" * 16, scopes=("read",))
        store.append([key], actor="admin", occurred_at="2025-01-02T00:00:00.000000Z")
        revoke = ApiKeyRevoked(client_id=a.client_id, key_id="a" * 16)
        store.append([revoke], actor="admin", occurred_at="2025-01-03T00:00:00.000000Z")
        # Stamped earlier than the event before it (a clock step back): still in seq order.
        store.append([revoke], actor="admin", occurred_at="2025-01-01T12:00:00.000000Z")
        every = list(store.client_events(a.client_id, "~"))
        assert [e.seq for e in every] == [1, 3, 4, 5]
        upto = store.client_events(a.client_id, "2025-01-02T00:00:00.000000Z")
        assert [e.seq for e in upto] == [1, 3, 5]  # the bound is inclusive
        typed = store.client_events(a.client_id, "~", ["api_key.revoked"])
        assert [e.seq for e in typed] == [4, 5]
        assert list(store.client_events("c" + "9" * 16, "~")) == []
        assert [e.type for e in store.client_events(b.client_id, "~")] == ["client.created"]
