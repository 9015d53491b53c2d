"""A backup that completes while the store is being listed is listed with its figures.

``backups_of`` reads the store's manifests (in a thread) and then adds the jobs still
known here. A job that completed in between is not in the list read from the store, so
it is listed from the job itself: complete, and with the vectors and bytes its manifest
holds, never as a complete backup of nothing.
"""

from __future__ import annotations

import io
from typing import Any, cast

from coordinator.backups import BackupService, Job
from workers.backup_store import InMemoryBackupStore

RESULT = {"collections": ["docs"], "vectors": 16, "bytes": 1234, "head_seq": 7}


class _StoreCompletingTheJob(InMemoryBackupStore):
    """Lists the manifests, then (as the worker and the job would meanwhile) completes it."""

    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job

    def manifests(self, client_id: str) -> list[dict[str, Any]]:
        listed = super().manifests(client_id)
        if self.job.status != "running":
            return listed
        writer = self.begin(client_id, self.job.job_id)
        writer.add("docs/a.bin", io.BytesIO(b"x"))
        writer.commit(
            {
                "backup_id": self.job.job_id,
                "kind": "snapshot",
                "started_at": self.job.started_at,
                "collections": [{"name": "docs"}],
            }
            | {k: v for k, v in RESULT.items() if k != "collections"}
        )
        self.job.status, self.job.result = "complete", dict(RESULT)
        return listed


async def test_a_job_completed_during_the_listing_keeps_its_figures() -> None:
    job = Job("s-20260101t000000-00000001", "c1", "snapshot", "running", "2026-01-01", ["docs"])
    store = _StoreCompletingTheJob(job)
    service = BackupService(cast(Any, None), cast(Any, None), store)
    service._jobs[job.job_id] = job

    rows = await service.backups_of("c1", kind="snapshot", collection="docs")

    assert len(rows) == 1
    row = rows[0]
    assert row["status"] == "complete"
    assert (row["vectors"], row["bytes"], row["head_seq"]) == (16, 1234, 7)
    assert row["collections"] == ["docs"]
    # Listed again, it comes from the store, with the same figures.
    again = await service.backups_of("c1", kind="snapshot", collection="docs")
    assert {k: again[0][k] for k in ("vectors", "bytes", "status")} == {
        k: row[k] for k in ("vectors", "bytes", "status")
    }


async def test_a_running_job_is_listed_as_running_with_nothing_yet() -> None:
    job = Job("b-20260101t000000-00000002", "c1", "backup", "running", "2026-01-01", None)
    service = BackupService(cast(Any, None), cast(Any, None), InMemoryBackupStore())
    service._jobs[job.job_id] = job
    (row,) = await service.backups_of("c1")
    assert row["status"] == "running" and row["vectors"] == 0 and row["collections"] == []
