"""A throwaway PostgreSQL database per test session, on the machine's server.

``VP_TEST_DATABASE_URL`` names a maintenance database on the server (default:
``postgresql://postgres@127.0.0.1:5432/postgres``, trust auth on loopback). The
session fixture creates ``vp_test_<random>`` there and drops it at the end;
each test starts from an empty schema. Without a server the tests skip, and
under CI they fail instead.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _admin_url() -> str:
    raw = os.environ.get("VP_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    return make_url(raw).set(drivername="postgresql+psycopg").render_as_string(False)


def _unreachable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required under CI: {reason}")
    pytest.skip(f"no PostgreSQL at VP_TEST_DATABASE_URL ({reason})")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """The URL of a database made for this session (dropped afterwards)."""
    admin = create_engine(_admin_url(), isolation_level="AUTOCOMMIT")
    name = f"vp_test_{secrets.token_hex(6)}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # any failure to reach or use the server
        admin.dispose()
        _unreachable(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    try:
        yield make_url(_admin_url()).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The session database with an empty ``public`` schema (a clean slate per test)."""
    engine = create_engine(pg_database, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()
    return pg_database
