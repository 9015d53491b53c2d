"""schemathesis against ``/openapi.json`` of a real ``vectorpanda up``: every operation.

Data-plane operations run with a data key, admin operations with the admin
token. Checks: no 5xx, every status documented, content type and response
body as documented. A fixed seed (derandomize) and a bounded number of
examples keep it fast in ``make test``; ``make fuzz`` runs the same with
``VP_FUZZ_EXAMPLES=100`` (examples per operation and generation mode);
``VP_FUZZ_ONLY`` ("METHOD /path", several separated by ``|``) runs only those
operations, with the same inputs as a whole run. ``VP_FUZZ_SEED=<integer>`` draws
other inputs than the fixed ones (the same again for the same seed): a campaign that
explores new ground, reproducible from its seed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import SUMMARY_PROPERTY
from tests.stack import Stack, running_stack

EXAMPLES = int(os.environ.get("VP_FUZZ_EXAMPLES", "20"))
# The suite's 180 s per test would interrupt a longer campaign (make fuzz): pytest-timeout
# raises inside the example that is running, Hypothesis replays it, it passes, and the
# pass is reported flaky. About 1.6 s per example and mode was seen on a loaded machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(180 + 4 * EXAMPLES)]

# VP_FUZZ_ONLY="DELETE /admin/v1/clients/{client_id}|...": only these operations (to
# reproduce one; the generated inputs are the same as in a whole run).
ONLY = {label for label in os.environ.get("VP_FUZZ_ONLY", "").split("|") if label}
# VP_FUZZ_SEED=<integer>: draw from that seed instead of the fixed derandomized inputs.
SEED = int(os.environ["VP_FUZZ_SEED"]) if os.environ.get("VP_FUZZ_SEED") else None
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
# (generation mode, the other plane's credential?, examples): each plane's own credential,
# then a short pass with the other one (a data key on admin routes and the reverse: 401s).
PASSES = ((POSITIVE, False, EXAMPLES), (NEGATIVE, False, EXAMPLES), (POSITIVE, True, 2))
COLLECTION = "fuzz"


def _credentials(stack: Stack, key: str, path: str, crossed: bool) -> dict[str, str]:
    admin, data = f"Bearer {stack.admin_token}", f"Bearer {key}"
    if path.startswith("/admin/"):
        return {"Authorization": data if crossed else admin}
    if path.startswith("/v1/"):
        return {"Authorization": admin if crossed else data}
    return {}


def _fixed_path(path: str, method: str) -> dict[str, Any] | None:
    """Non-destructive data-plane operations address a real collection, to get past 404."""
    if "{name}" in path and method.upper() != "DELETE":
        return {"name": COLLECTION}
    return None


def test_every_operation_conforms_to_the_openapi_document(
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
    record_property: Callable[[str, object], None],
) -> None:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    with running_stack(data_dir, workers=1, VP_RATE_LIMITS="false") as stack:
        key = stack.new_client("fuzz", tier="premium")
        with stack.client(key) as c:
            created = c.post("/v1/collections", json={"name": COLLECTION, "dimension": 2})
            assert created.status_code == 201, created.text
        schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json")
        operations = examples = 0
        failures: list[str] = []
        failed_checks: list[str] = []
        statuses: dict[int, int] = {}
        per_operation: dict[str, int] = {}
        crossed = {"now": False}
        for result in schema.get_all_operations():
            operation = result.ok()
            if ONLY and operation.label not in ONLY:
                continue
            operations += 1
            for mode, other_plane, count in PASSES:
                crossed["now"] = other_plane
                strategy = operation.as_strategy(
                    generation_mode=mode,
                    path_parameters=_fixed_path(operation.path, operation.method),
                )

                failed_checks.clear()  # this pass's

                @seed(SEED)  # None: derandomize below decides
                @given(case=strategy)
                @settings(
                    max_examples=count,
                    derandomize=SEED is None,
                    deadline=None,
                    database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                def run(case: schemathesis.Case) -> None:
                    nonlocal examples
                    examples += 1
                    label = case.operation.label
                    per_operation[label] = per_operation.get(label, 0) + 1
                    headers = _credentials(stack, key, case.operation.path, crossed["now"])
                    try:
                        response = case.call(base_url=stack.url, headers=headers, timeout=30)
                        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                        case.validate_response(response, checks=CHECKS)
                    except BaseException as exc:  # pytest's own outcomes included
                        failed_checks.append(f"{type(exc).__name__}: {exc}")
                        raise

                try:
                    run()
                except Unsatisfiable:
                    pass  # nothing to negate: an operation without parameters or body
                except (Exception, BaseExceptionGroup) as exc:
                    plane = "other plane's credential" if other_plane else mode.value
                    causes = getattr(exc, "exceptions", ())  # a group: say what was inside
                    detail = "; ".join(f"{type(c).__name__}: {c}" for c in causes)
                    if failed_checks:  # what failed first (its replay may have passed)
                        detail += f"; first failed check: {failed_checks[0]}"
                    failures.append(f"{operation.label} ({plane}): {exc} {detail}")
        server_errors = sum(n for status, n in statuses.items() if status >= 500)
        lines = [
            f"schemathesis: {operations} operations, {examples} examples "
            f"({EXAMPLES} per operation and mode, seed {SEED if SEED is not None else 'fixed'}), "
            f"{server_errors} server errors, "
            f"statuses {dict(sorted(statuses.items()))}"
        ]
        few = {label: n for label, n in per_operation.items() if n < EXAMPLES}
        if few:  # hypothesis stops once an operation's inputs are exhausted
            lines.append(f"schemathesis: operations with fewer examples (inputs exhausted): {few}")
        with capsys.disabled():  # shown at once in a plain run
            print("\n" + "\n".join(lines))
        # ... and in the summary of make test's parallel run (tests/conftest.py), where a
        # worker process's output is not shown
        record_property(SUMMARY_PROPERTY, "\n".join(lines))
        assert operations >= 20 or ONLY
        assert not failures, "\n\n".join(failures)
        assert server_errors == 0
