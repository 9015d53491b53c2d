"""Self-verifying JSON-lines export of the event log.

Each line is one stored event with its ``prev_hash`` and ``hash``; anyone can
recompute every hash from the line itself and check that each line links to
the one before. The first line's ``prev_hash`` anchors the export to the
part of the log before it (the genesis hash for an export from the start).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import orjson

from eventlog.consumer import EventReader
from eventlog.hashchain import ChainReport, Mismatch, canonical_json, chain_hash
from eventlog.records import HASHED_FIELDS, MAX_READ_LIMIT, RECORD_FIELDS


def export_lines(
    events: EventReader, *, after_seq: int = 0, since_time: str | None = None
) -> Iterator[bytes]:
    """Lines (with trailing newline) for events after ``after_seq`` at or after ``since_time``."""
    cp = after_seq
    started = since_time is None
    while True:
        page = events.read(after_seq=cp, limit=MAX_READ_LIMIT)
        if not page:
            return
        for stored in page:
            # The log is in time order, so once one event qualifies all later ones do.
            if not started and since_time is not None and stored.occurred_at >= since_time:
                started = True
            if started:
                yield canonical_json(stored.record()) + b"\n"
        cp = page[-1].seq


def verify_export(lines: Iterable[bytes | str]) -> ChainReport:
    """Recompute each line's hash and check the links between lines."""
    mismatches: list[Mismatch] = []
    prev: str | None = None
    count, head = 0, ""
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        count += 1
        try:
            row = orjson.loads(raw)
            fields = {k: row[k] for k in RECORD_FIELDS}
        except (orjson.JSONDecodeError, KeyError, TypeError):
            mismatches.append(Mismatch(seq=-number, reason=f"line {number} is not an event"))
            continue
        seq = int(fields["seq"])
        if prev is not None and fields["prev_hash"] != prev:
            mismatches.append(Mismatch(seq=seq, reason="prev_hash does not match the line before"))
        recomputed = chain_hash(
            fields["prev_hash"],
            **{k: fields[k] for k in HASHED_FIELDS},
        )
        if recomputed != fields["hash"]:
            mismatches.append(Mismatch(seq=seq, reason="hash does not match the line's contents"))
        prev = head = fields["hash"]
    return ChainReport(ok=not mismatches, events=count, head_hash=head, mismatches=mismatches)
