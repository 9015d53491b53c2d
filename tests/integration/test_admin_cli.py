"""``vectorpanda admin ...`` against a real ``vectorpanda up``: a key without curl."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from tests.stack import Stack

pytestmark = pytest.mark.integration


def admin(stack: Stack, *args: str, token_env: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``vectorpanda admin``; the token comes from the data dir's env file unless told."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VP_")}
    env["VP_URL"] = stack.url
    if token_env:
        env["VP_ADMIN_TOKEN"] = stack.admin_token
    cmd = [sys.executable, "-m", "vectorpanda", "admin", *args]
    if "--help" not in args:
        cmd += ["--data-dir", str(stack.data_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_from_a_new_client_to_a_working_key_and_the_audit_trail(stack: Stack) -> None:
    created = json.loads(
        ok(
            admin(
                stack,
                "clients",
                "create",
                "--name",
                "Cli Co",
                "--email",
                "ops@cli.example",
                "--json",
            )
        )
    )
    cid = created["client_id"]
    assert created["tier"] == "free" and created["status"] == "active"
    assert cid in ok(admin(stack, "clients", "list"))
    assert json.loads(ok(admin(stack, "clients", "show", cid, "--json")))["name"] == "Cli Co"

    line = ok(
        admin(stack, "keys", "create", cid, "--scopes", "read,write,manage", "--label", "laptop")
    ).strip()
    assert line.startswith("export VP_API_KEY=vp_")
    api_key = line.removeprefix("export VP_API_KEY=")
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {api_key}"}) as c:
        r = c.post("/v1/collections", json={"name": "cli", "dimension": 2})
        assert r.status_code == 201, r.text
    keys = json.loads(ok(admin(stack, "keys", "list", cid, "--json")))
    assert [k["label"] for k in keys] == ["laptop"]
    assert "vp_" not in ok(admin(stack, "keys", "list", cid))  # never a secret

    tier = admin(stack, "tier", cid, "standard", "--reason", "signed a contract", "--json")
    assert json.loads(ok(tier))["tier"] == "standard"
    paused = admin(stack, "pause", cid, "--reason", "unpaid invoice", "--json", token_env=True)
    assert json.loads(ok(paused))["status"] == "paused"
    resumed = admin(stack, "resume", cid, "--reason", "invoice paid", "--json")
    assert json.loads(ok(resumed))["status"] == "active"
    billing = admin(
        stack,
        "billing",
        cid,
        "--kind",
        "payment_received",
        "--amount-cents",
        "1200",
        "--currency",
        "EUR",
        "--reference",
        "inv-1",
        "--reason",
        "paid by transfer",
    )
    assert "billing.payment_received" in ok(billing)
    ok(admin(stack, "keys", "revoke", cid, keys[0]["key_id"]))

    events = [
        json.loads(x) for x in ok(admin(stack, "events", "--client-id", cid, "--json")).splitlines()
    ]
    types = [e["type"] for e in events]
    assert types == [
        "client.created",
        "api_key.issued",
        "collection.created",
        "client.tier_changed",
        "client.paused",
        "client.resumed",
        "billing.payment_received",
        "api_key.revoked",
    ], types


def test_errors_are_one_sentence_and_no_token_means_a_usage_error(stack: Stack, tmp_path) -> None:
    missing = admin(stack, "clients", "show", "c0000000000000000")
    assert missing.returncode == 1 and "404 not_found" in missing.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("VP_")}
    no_token = subprocess.run(
        [
            sys.executable,
            "-m",
            "vectorpanda",
            "admin",
            "clients",
            "list",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert no_token.returncode == 2 and "VP_ADMIN_TOKEN" in no_token.stderr
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "vectorpanda",
            "admin",
            "clients",
            "list",
            "--url",
            "http://127.0.0.1:9",
        ],
        capture_output=True,
        text=True,
        env={**env, "VP_ADMIN_TOKEN": "x" * 40},
        timeout=60,
    )
    assert refused.returncode == 1 and "cannot reach http://127.0.0.1:9" in refused.stderr


def test_every_command_documents_its_defaults(stack: Stack) -> None:
    text = " ".join(ok(admin(stack, "keys", "create", "--help")).split())
    assert "(default: read,write,manage)" in text and "--json" in text
    assert "(default: 100)" in " ".join(ok(admin(stack, "events", "--help")).split())
    up = subprocess.run(
        [sys.executable, "-m", "vectorpanda", "up", "--help"], capture_output=True, text=True
    )
    text = " ".join(up.stdout.split())
    for option, default in (("--host", "127.0.0.1"), ("--port", "8080"), ("--workers", "2")):
        assert option in text and f"(default: {default})" in text
