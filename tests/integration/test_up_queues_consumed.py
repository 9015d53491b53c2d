"""`vectorpanda up` with RabbitMQ leaves no queue without a consumer (issue 22).

Every queue `up` declares under its (unique, per-test) exchange prefix must have
a consumer while it runs and be drained after a burst of events. The dead-letter
queues (``<queue>.dlq``) are parking places for poison messages that operators
read by hand; they must exist empty.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.stack import amqp_url_or_skip, broker_cleanup, running_stack

pytestmark = pytest.mark.integration


def list_queues(prefix: str) -> dict[str, tuple[int, int]]:
    """name -> (messages, consumers) of the broker's queues starting with ``prefix``."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name", "messages", "consumers"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    queues = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(prefix) and parts[1].isdigit():
            queues[parts[0]] = (int(parts[1]), int(parts[2]))
    return queues


def test_every_queue_up_declares_is_consumed_and_drained(tmp_path: Path) -> None:
    url = amqp_url_or_skip()
    if subprocess.run(["which", "rabbitmqctl"], capture_output=True).returncode != 0:
        pytest.skip("rabbitmqctl is not installed here")
    exchange = f"vptest.{uuid.uuid4().hex[:10]}.events"
    declared: list[str] = []
    try:
        with running_stack(
            tmp_path / "data", workers=1, VP_AMQP_URL=url, VP_AMQP_EXCHANGE=exchange
        ) as stack:
            for i in range(5):  # client.created, api_key.issued, tier and pause events
                stack.new_client(f"queues{i}")
            with stack.admin() as admin:
                for client in admin.get("/admin/v1/clients").json()["clients"][:2]:
                    path = f"/admin/v1/clients/{client['client_id']}"
                    body = {"tier": "premium", "reason": "queue test"}
                    assert admin.post(f"{path}/tier", json=body).status_code == 200
            deadline = time.monotonic() + 30
            while True:
                queues = list_queues(exchange)
                main = {n: v for n, v in queues.items() if not n.endswith(".dlq")}
                settled = main and all(m == 0 and c >= 1 for m, c in main.values())
                if settled or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            declared = sorted(queues)
            assert any(n.endswith(".notifier") for n in main), queues
            assert any(n.endswith(".projections") for n in main), queues
            for name, (messages, consumers) in main.items():
                assert consumers >= 1, f"{name} has no consumer: {queues}"
                assert messages == 0, f"{name} is not drained: {queues}"
            for name, (messages, _consumers) in queues.items():
                if name.endswith(".dlq"):
                    assert messages == 0, f"{name} holds dead letters: {queues}"
    finally:
        names = [n for n in declared if not n.endswith(".dlq")]
        broker_cleanup(url, exchange, names)
