"""Metadata updates: the WAL record, recovery, compaction, limits; listing and counting."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from workers.collection import Collection
from workers.collection_spec import parse_collection_spec
from workers.errors import StoreError
from workers.handlers import BUDGETED, HANDLERS
from workers.metadata_filter import parse_filter
from workers.metadata_patch import PatchError, check_patch
from workers.protocol import ErrorCode, Frame, Op
from workers.segment import wal_name
from workers.tenant_store import TenantStore
from workers.wal import CorruptRecordError, MetadataRecord, decode_record, encode_record
from workers.work_budget import WorkBudget

from .conftest import SMALL_WAL

DIM = 4


def _open(hot: Path, index: str = "flat") -> tuple[TenantStore, Collection]:
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL)
    if not (hot / "tenant_a" / "docs").exists():
        store.create_collection(
            parse_collection_spec(
                {"collection": "docs", "dimension": DIM, "metric": "l2", "index": index}
            )
        )
    return store, store.collection("docs")


def _fill(coll: Collection, n: int) -> None:
    vectors = np.random.default_rng(5).standard_normal((n, DIM), np.float32)
    meta = [{"n": i, "color": ["red", "blue"][i % 2]} if i % 5 else None for i in range(n)]
    coll.upsert([f"v{i:03d}" for i in range(n)], meta, vectors)


def _metadata(coll: Collection) -> dict[str, object]:
    ids = sorted(coll._table.ids)
    found, meta, _ = coll.fetch(ids)
    return dict(zip(found, meta, strict=True))


def test_metadata_record_round_trips_and_a_damaged_one_is_refused() -> None:
    record = MetadataRecord(["a", "é"], {"k": "v", "n": 1.5, "tags": ["x"]}, ["old"])
    payload = encode_record(record)
    assert decode_record(payload) == record
    with pytest.raises(CorruptRecordError):
        decode_record(payload[:-1])
    with pytest.raises(CorruptRecordError):
        decode_record(payload + b"x")


def test_update_is_logged_replayed_on_reopen_and_folded_by_compaction(hot: Path) -> None:
    store, coll = _open(hot)
    _fill(coll, 20)
    assert coll.update_metadata(["v001", "v002", "missing", "v001"], None, {"k": "x"}, ["n"]) == 2
    red = parse_filter({"color": "red"})
    assert coll.update_metadata(None, red, {"hot": True}, []) == 8
    expected = _metadata(coll)
    assert expected["v001"] == {"color": "blue", "k": "x"}
    assert expected["v002"] == {"color": "red", "k": "x", "hot": True}
    assert expected["v000"] is None  # no metadata, not matched by the filter
    store.close()

    store, coll = _open(hot)  # recovery: segment + WAL replay
    assert _metadata(coll) == expected
    coll.compact()
    store.close()
    store, coll = _open(hot)
    assert coll.generation == 1
    assert _metadata(coll) == expected
    # The update lives in the new segment now, not in a log.
    assert (coll.directory / wal_name(1)).stat().st_size == 0
    store.close()


def test_a_torn_update_record_is_all_or_nothing(hot: Path) -> None:
    store, coll = _open(hot)
    _fill(coll, 30)
    before = _metadata(coll)
    wal_path = coll.directory / wal_name(0)
    size_before = wal_path.stat().st_size
    coll.update_metadata(None, None, {"all": 1}, ["color"])
    after = _metadata(coll)
    size_after = wal_path.stat().st_size
    store.close()
    full = wal_path.read_bytes()
    for cut in sorted({size_before + 1, (size_before + size_after) // 2, size_after - 1}):
        wal_path.write_bytes(full[:cut])
        store, coll = _open(hot)
        assert _metadata(coll) == before, f"a record cut at {cut} was partly applied"
        store.close()
    wal_path.write_bytes(full)
    store, coll = _open(hot)
    assert _metadata(coll) == after
    assert all(m == {"all": 1, **({"n": m["n"]} if "n" in m else {})} for m in after.values())
    store.close()


def test_over_the_size_limit_nothing_is_written(hot: Path) -> None:
    store, coll = _open(hot)
    _fill(coll, 10)
    before = _metadata(coll)
    wal_size = coll._wal.size
    with pytest.raises(PatchError, match="v001"):
        coll.update_metadata(["v002", "v001"], None, {"big": "x" * 40}, [], 70)
    assert _metadata(coll) == before and coll._wal.size == wal_size
    # Under the limit it passes, and unset alone may shrink metadata below it.
    assert coll.update_metadata(["v001"], None, {}, ["color"], 48) == 1
    store.close()


@pytest.mark.parametrize(
    ("fields", "unset", "message"),
    [
        (None, None, "at least one"),
        ({}, [], "at least one"),
        ({"a": {"nested": 1}}, None, "flat"),
        ({"a": [1, 2]}, None, "flat"),
        ({"a": float("nan")}, None, "flat"),
        ({"a": 1}, ["a"], "both"),
        ({"": 1}, None, "field names"),
        (None, "a", "list of field names"),
        ([1], None, "object"),
    ],
)
def test_bad_patches_are_refused(fields: object, unset: object, message: str) -> None:
    with pytest.raises(PatchError, match=message):
        check_patch(fields, unset)


def _frame(op: Op, **header: object) -> Frame:
    return Frame(header={"op": op.value, "collection": "docs", **header})


@pytest.mark.parametrize("index", ["flat", "hnsw"])
def test_list_walks_every_id_once_in_byte_order_across_writes(hot: Path, index: str) -> None:
    store, coll = _open(hot, index)
    rng = random.Random(7)
    ids = {f"{rng.choice(['a', 'B', 'é', '中', '😀'])}{rng.randrange(10**6)}" for _ in range(300)}
    vectors = np.zeros((len(ids), DIM), np.float32)
    coll.upsert(sorted(ids), [{"p": i % 3} for i in range(len(ids))], vectors)
    present_throughout = set(ids)
    seen: list[str] = []
    after = None
    while True:
        reply, _ = HANDLERS[Op.LIST_VECTORS](store, _frame(Op.LIST_VECTORS, after=after, limit=7))
        seen.extend(reply["ids"])
        # Writes between pages: new ids on both sides of the position, some deletes.
        new = [f"{rng.choice(['0', 'z', '~'])}{rng.randrange(10**6)}" for _ in range(3)]
        coll.upsert(new, [None] * 3, np.zeros((3, DIM), np.float32))
        victim = rng.choice(sorted(present_throughout))
        coll.delete([victim])
        present_throughout.discard(victim)
        if not reply["more"]:
            break
        after = reply["ids"][-1]
    assert len(seen) == len(set(seen)), "an id was listed twice"
    assert seen == sorted(seen, key=lambda i: i.encode())
    assert present_throughout <= set(seen), "an id present throughout was skipped"
    store.close()


def test_list_pages_filter_values_and_count(hot: Path) -> None:
    store, coll = _open(hot)
    _fill(coll, 40)
    reply, arrays = HANDLERS[Op.LIST_VECTORS](
        store,
        _frame(
            Op.LIST_VECTORS,
            limit=5,
            filter={"color": "red"},
            include_metadata=True,
            include_values=True,
        ),
    )
    assert reply["ids"] == ["v002", "v004", "v006", "v008", "v012"] and reply["more"]
    assert [m["color"] for m in reply["metadata"]] == ["red"] * 5
    _, _, values = coll.fetch(reply["ids"])
    assert arrays["values"].tobytes() == values.tobytes()
    last, _ = HANDLERS[Op.LIST_VECTORS](store, _frame(Op.LIST_VECTORS, after="v036", limit=2))
    assert last == {"ids": ["v037", "v038"], "more": True}
    last, _ = HANDLERS[Op.LIST_VECTORS](store, _frame(Op.LIST_VECTORS, after="v037", limit=2))
    assert last == {"ids": ["v038", "v039"], "more": False}
    count = HANDLERS[Op.COUNT_VECTORS]
    assert count(store, _frame(Op.COUNT_VECTORS))[0] == {"count": 40}
    assert count(store, _frame(Op.COUNT_VECTORS, filter={"n": {"$gte": 30}}))[0]["count"] == 8
    for bad in ({"limit": 0}, {"limit": 1001}, {"limit": True}, {"limit": 5, "after": 3}):
        with pytest.raises(StoreError) as err:
            HANDLERS[Op.LIST_VECTORS](store, _frame(Op.LIST_VECTORS, **bad))
        assert err.value.code == ErrorCode.INVALID
    store.close()


def test_update_handler_refuses_bad_frames_and_changes_nothing(hot: Path) -> None:
    store, coll = _open(hot)
    _fill(coll, 10)
    before = _metadata(coll)
    update = HANDLERS[Op.UPDATE_METADATA]
    for bad in (
        {"ids": ["v001"], "filter": {"n": 1}, "set": {"a": 1}},
        {"ids": ["v001"]},
        {"filter": {"n": {"$bad": 1}}, "set": {"a": 1}},
        {"ids": "v001", "set": {"a": 1}},
        {"ids": ["v001"], "set": {"a": 1}, "max_metadata_bytes": -1},
    ):
        with pytest.raises(StoreError) as err:
            update(store, _frame(Op.UPDATE_METADATA, **bad))
        assert err.value.code == ErrorCode.INVALID, bad
    assert _metadata(coll) == before
    reply, _ = update(store, _frame(Op.UPDATE_METADATA, filter={}, set={"all": True}))
    assert reply == {"updated": 10}
    store.close()


def test_abandoned_list_count_and_update_stop_and_report_their_cost(hot: Path) -> None:
    store, coll = _open(hot)
    _fill(coll, 5000)
    before = _metadata(coll)
    frames = [
        (Op.LIST_VECTORS, {"limit": 10, "filter": {"n": -1}}),  # no match: walks every id
        (Op.COUNT_VECTORS, {"filter": {"n": 3}}),
        (Op.UPDATE_METADATA, {"filter": {"n": 3}, "set": {"late": True}}),
    ]
    for op, header in frames:
        budget = WorkBudget()
        budget.cancel()
        with pytest.raises(StoreError) as err:
            BUDGETED[op](store, _frame(op, **header), budget=budget)
        assert err.value.code == ErrorCode.UNAVAILABLE, op
        budget = WorkBudget()
        BUDGETED[op](store, _frame(op, **header), budget=budget)
        assert budget.cost >= 5000, op  # every row was examined once
    assert coll.count(parse_filter({"late": True})) == 1
    assert {k: v for k, v in _metadata(coll).items() if k != "v003"} == {
        k: v for k, v in before.items() if k != "v003"
    }
    store.close()
