"""Alembic environment: runs on the connection ``eventlog.schema`` hands over.

Never run through the ``alembic`` command line: ``vectorpanda migrate`` (and a
coordinator's start-up) call ``eventlog.schema.upgrade``, which holds the
database's write lock and passes its connection in ``config.attributes``.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
# The caller's transaction (under the write lock) is already open: the whole upgrade
# commits with it, or none of it does (DDL is transactional on both dialects).
with context.begin_transaction():
    context.run_migrations()
