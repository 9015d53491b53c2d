"""The event records module stays pure, and every outward shape takes its fields from it."""

import subprocess
import sys
from dataclasses import fields

import orjson

from api.schemas_admin import EventOut, EventPageOut, event_out
from eventlog.bus import decode_message, encode_message
from eventlog.events import ClientCreated
from eventlog.export import export_lines, verify_export
from eventlog.hashchain import ChainRow
from eventlog.memory_store import InMemoryEventStore
from eventlog.records import HASHED_FIELDS, RECORD_FIELDS


def test_records_import_no_database_or_broker_library():
    probe = (
        "import sys, eventlog.records\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'aio_pika'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_export_line_bus_message_and_api_body_carry_exactly_the_record_fields():
    store = InMemoryEventStore()
    (stored,) = store.append(
        [ClientCreated(client_id="acme", name="Acme", email="a@acme.example", tier="free")],
        actor="admin",
    )
    line = next(export_lines(store))
    assert tuple(orjson.loads(line)) == tuple(sorted(RECORD_FIELDS))
    assert verify_export([line]).ok
    assert decode_message(encode_message(stored)) == stored
    page = EventPageOut(events=[event_out(stored)], next_after_seq=stored.seq)
    assert page.model_dump(mode="json")["events"] == [stored.record()]
    assert set(EventOut.__pydantic_fields__) == set(RECORD_FIELDS)
    assert set(HASHED_FIELDS) == set(RECORD_FIELDS) - {"prev_hash", "hash"}


def test_the_chain_verifiers_rows_follow_the_record_field_order():
    # The raw-cursor scan selects RECORD_FIELDS and builds ChainRow positionally.
    names = tuple("data" if f.name == "data_json" else f.name for f in fields(ChainRow))
    assert names == RECORD_FIELDS
