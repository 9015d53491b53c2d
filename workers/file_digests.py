"""SHA-256 of a tenant's or a collection's files, for deletion receipts.

The bytes hashed are the files as stored (ciphertext for an encrypted tenant), so a
receipt can be checked against any copy found later (a backup, a disk image).
Paths are relative to the data directory's parent of ``hot``/``cold``:
``hot/<tenant>/<collection>/seg-3/vectors.npy``. The directory lock file and the
leftovers of interrupted removals are not data and are left out.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20
_SKIPPED = frozenset({".lock"})


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_digests(root: Path, label: str) -> list[dict[str, str]]:
    """``[{path, sha256}]`` of every file under ``root``, paths prefixed with ``label``."""
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name in _SKIPPED:
            continue
        relative = path.relative_to(root)
        if any(part.startswith(".trash-") for part in relative.parts):
            continue
        try:
            found.append({"path": f"{label}/{relative}", "sha256": file_sha256(path)})
        except FileNotFoundError:  # removed meanwhile (an orphan cleaned up)
            continue
    return found
