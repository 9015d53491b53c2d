"""Event type names are spelled once, in eventlog/events.py; code elsewhere uses the classes."""

import ast
from pathlib import Path

from eventlog.events import EVENT_TYPES

ROOT = Path(__file__).resolve().parents[3]
COMPONENTS = ("api", "coordinator", "workers", "eventlog", "projections", "scheduler", "notifier")


def test_no_event_type_is_spelled_as_a_string_outside_the_catalogue():
    found = []
    for component in (*COMPONENTS, "vectorpanda"):
        for path in sorted((ROOT / component).rglob("*.py")):
            if path == ROOT / "eventlog" / "events.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and node.value in EVENT_TYPES:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert found == [], "use the event class's event_type instead:\n" + "\n".join(found)
