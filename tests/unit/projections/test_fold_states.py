"""The fold builds each client's state with plain str tier and status, once, so its
rows (and a replay's, sent to the writer process by marshal) never carry the enums."""

from __future__ import annotations

import marshal

from eventlog.events import ClientCreated, ClientPaused, Tier, TierChanged
from eventlog.records import StoredEvent
from projections.fold import ClientState, fold

C = "c00000000000000aa"


def _stored(seq: int, event: object) -> StoredEvent:
    data = event.model_dump(mode="json")  # type: ignore[attr-defined]
    return StoredEvent(
        seq,
        f"e{seq}",
        event.event_type,
        event.schema_version,  # type: ignore[attr-defined]
        "2025-01-01T00:00:00Z",
        "admin",
        C,
        data,
        "0" * 64,
        f"{seq:064x}",
    )


def test_states_and_history_rows_hold_plain_str() -> None:
    state: ClientState | None = None
    story = [
        ClientCreated(client_id=C, name="A", email="a@x.io", tier=Tier.FREE),
        TierChanged(client_id=C, from_tier=Tier.FREE, to_tier=Tier.PREMIUM),
        ClientPaused(client_id=C, reason="unpaid", automatic=True),
    ]
    for seq, event in enumerate(story, start=1):
        effects = fold(_stored(seq, event), state)
        state = effects.state
        assert state is not None
        assert type(state.tier) is str and type(state.status) is str
        history = dict(next(row for name, row in effects.rows if name == "client_history"))
        assert type(history["tier"]) is str and type(history["status"]) is str
        marshal.dumps((state.tier, state.status, tuple(history.values())))  # no enum inside
    assert state is not None and (state.tier, state.status) == ("premium", "paused")
