"""``vectorpanda admin rotate-master-key``: a new master key, every data key re-wrapped.

Run it on the coordinator's machine, with the coordinator stopped (or restart it after:
a running coordinator keeps the master keys it read at start). It works on the env
file and the control database directly, in three durable steps:

1. the env file gets a fresh ``VP_MASTER_KEY`` and the previous one as
   ``VP_MASTER_KEY_OLD`` (written to a temp file, fsynced, renamed; mode 0600);
2. every data key not yet wrapped by the new master key is unwrapped with the old one
   and wrapped with the new one, all in one transaction (``secure_delete`` on);
3. ``VP_MASTER_KEY_OLD`` is removed from the env file.

A crash after step 1 leaves both keys in the file, and a coordinator started then
unwraps with either; running the command again finishes the job (it never generates a
second new key while an old one is still listed). The command refuses to drop the old
key while any data key is wrapped by a master key the file does not hold. Data keys
themselves do not change, so no tenant file is rewritten. Keep no copy of the old
master key: with it gone, old copies of the control database are useless too.
"""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vectorpanda.settings import env_file_path, read_env_file
from workers.durable_files import write_bytes_durably

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from coordinator.key_wrapping import LocalKeyWrapper

CURRENT, OLD = "VP_MASTER_KEY", "VP_MASTER_KEY_OLD"


def _rewrite_env(path: Path, updates: dict[str, str | None]) -> None:
    """Set (or with None, remove) entries of the env file, atomically and 0600."""
    lines, seen = [], set()
    for raw in path.read_text(encoding="utf-8").splitlines():
        name = raw.partition("=")[0].strip()
        if name in updates:
            seen.add(name)
            value = updates[name]
            if value is not None:
                lines.append(f"{name}={value}")
            continue
        lines.append(raw)
    lines += [f"{k}={v}" for k, v in updates.items() if k not in seen and v is not None]
    write_bytes_durably(path, ("\n".join(lines) + "\n").encode("utf-8"))
    os.chmod(path, 0o600)


def _rewrap_all(conn: Connection, wrapper: LocalKeyWrapper) -> tuple[int, int]:
    from coordinator.accounts.data_key_rows import SqliteDataKeyRows

    rows = SqliteDataKeyRows(conn)
    done = kept = 0
    for row in rows.all():
        if row.wrapper_key_id == wrapper.key_id:
            kept += 1
            continue
        key = wrapper.unwrap(bytes.fromhex(row.wrapped), row.wrapper_key_id)
        rows.rewrap(row.client_id, row.key_version, wrapper.wrap(key).hex(), wrapper.key_id)
        done += 1
    return done, kept


def rotate_master_key(data_dir: Path) -> str:
    """Run the three steps (or finish an interrupted run); a one-line summary."""
    from coordinator.key_wrapping import KeyUnavailable, LocalKeyWrapper
    from eventlog.sqlite import open_engine, write_transaction

    env_path = env_file_path(data_dir)
    values = read_env_file(env_path)
    if not values.get(CURRENT):
        raise SystemExit(f"vectorpanda admin rotate-master-key: no {CURRENT} in {env_path}")
    if not values.get(OLD):
        _rewrite_env(env_path, {OLD: values[CURRENT], CURRENT: secrets.token_urlsafe(32)})
        values = read_env_file(env_path)
    wrapper = LocalKeyWrapper([values[CURRENT], values[OLD]])
    control = data_dir / "control.sqlite3"
    done = kept = 0
    if control.exists():
        engine = open_engine(control)
        try:
            with write_transaction(engine) as conn:
                done, kept = _rewrap_all(conn, wrapper)
        except KeyUnavailable as exc:
            raise SystemExit(
                f"vectorpanda admin rotate-master-key: {exc}; {OLD} is kept in {env_path}"
            ) from None
        finally:
            engine.dispose()
    _rewrite_env(env_path, {OLD: None})
    return (
        f"master key rotated (new id {wrapper.key_id}): {done} data keys re-wrapped, "
        f"{kept} already under it; restart the coordinator to use it"
    )


def cmd_rotate_master_key(args: argparse.Namespace) -> int:
    print(rotate_master_key(Path(args.data_dir)))
    return 0


def add_master_key_command(admin_groups: Any) -> None:
    """Register ``admin rotate-master-key`` (local: env file and control database)."""
    parser = admin_groups.add_parser(
        "rotate-master-key",
        help="generate a new VP_MASTER_KEY and re-wrap every client's data key (local)",
        description=(__doc__ or "").split("\n\n")[1],
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("VP_DATA_DIR", "./vp-data"),
        help="the data directory (default ./vp-data, as `vectorpanda up`)",
    )
    parser.set_defaults(func=cmd_rotate_master_key)
