"""Coordinator group members started alike (compose's two identical services): each claims
its own member slot on the shared data dir, and advertises an address the others reach."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vectorpanda.server.group import OtherHostMember, advertised_host, claim_member_slot
from vectorpanda.server.run_files import this_host
from vectorpanda.settings import Settings


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(data_dir=tmp_path, coordinator_processes=2, **extra)  # type: ignore[arg-type]


def test_members_started_alike_take_different_slots_and_a_freed_one_is_taken_again(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    first, fd_first = claim_member_slot(settings)
    # a second process (flock is per open file, so a second claim in one process would
    # also do; a process is what compose runs)
    code = (
        "import sys; from pathlib import Path; from vectorpanda.settings import Settings;"
        "from vectorpanda.server.group import claim_member_slot;"
        "print(claim_member_slot(Settings(data_dir=Path(sys.argv[1]), coordinator_processes=2))[0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert (first, int(out.stdout)) == (0, 1)
    os.close(fd_first)  # the member holding slot 0 exits: a restarted one gets slot 0 back
    again, fd_again = claim_member_slot(settings)
    assert again == 0
    os.close(fd_again)


def test_the_advertised_host_is_reachable_by_the_other_members(tmp_path: Path) -> None:
    assert advertised_host(_settings(tmp_path)) == "127.0.0.1"  # one machine: loopback
    named = _settings(tmp_path, internal_host="0.0.0.0", internal_advertise_host="coord-1")
    assert advertised_host(named) == "coord-1"
    # bound on every interface without a name: this host's own address, never 0.0.0.0
    anywhere = advertised_host(_settings(tmp_path, internal_host="0.0.0.0"))
    assert anywhere == socket.gethostbyname(socket.gethostname()) and anywhere != "0.0.0.0"


def test_a_member_on_another_host_is_refused_and_one_on_this_host_joins(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    first, fd_first = claim_member_slot(settings, host="boot-a")
    assert (tmp_path / "run" / f"member-{first}.host").read_text().strip() == "boot-a"
    # flock is per open file: a second claim in this process is another member
    with pytest.raises(OtherHostMember, match="another host"):
        claim_member_slot(settings, host="boot-b")
    second, fd_second = claim_member_slot(settings, host="boot-a")  # same host: joins
    assert second != first
    os.close(fd_second)
    os.close(fd_first)  # the member on host a is gone: one on host b may now start
    again, fd_again = claim_member_slot(settings, host="boot-b")
    assert again == first
    os.close(fd_again)


def test_this_host_is_the_kernels_boot_id() -> None:
    host = this_host()
    assert host is None or (len(host) >= 32 and host == this_host())


def test_on_postgresql_a_member_on_another_host_joins(tmp_path: Path) -> None:
    # The control plane on PostgreSQL: the group shares its membership, applied seqs and
    # the leader's address through the database, so the one-host check is off.
    settings = _settings(tmp_path)
    first, fd_first = claim_member_slot(settings, host="boot-a")
    second, fd_second = claim_member_slot(settings, host="boot-b", check_hosts=False)
    assert second != first
    os.close(fd_second)
    os.close(fd_first)
