"""The peers benchmark's data: real sentence embeddings, made once and cached.

Sentences (``corpus``) are embedded by all-MiniLM-L6-v2 (``embed``) in chunks of
1,000 that are saved as they are made, under ~/.cache/vectorpanda-bench/peers (or
$VP_BENCH_CACHE), so an interrupted first run resumes where it stopped and the
quick set (the first 11,000) is a prefix of the full one (the first 101,000): the
first 1,000 sentences are the held-out queries, the next ``n`` the collection.

    .venv/bin/python -m benchmarks.peers.dataset --count 101000   # prebuild the cache
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import faiss
import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks.data import Dataset, gaussian_mixture
from benchmarks.peers import corpus

CHUNK = 1000
MAX_SENTENCES = 101_000
CACHE = Path(os.environ.get("VP_BENCH_CACHE", Path.home() / ".cache" / "vectorpanda-bench"))


def cache_dir() -> Path:
    path = CACHE / "peers"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cached_sentences() -> list[str]:
    path = cache_dir() / "sentences.json"
    if not path.exists():
        print(f"corpus: reading the man pages under {corpus.MAN_ROOT}")
        path.write_text(json.dumps(corpus.sentences(MAX_SENTENCES)))
    return list(json.loads(path.read_text()))


def embeddings(count: int) -> np.ndarray:
    """The first ``count`` sentences' embeddings, computing missing chunks (resumable)."""
    from benchmarks.peers.embed import MiniLM

    texts = cached_sentences()
    if len(texts) < count:
        raise ValueError(f"the corpus has {len(texts):,} sentences, {count:,} wanted")
    chunks = (count + CHUNK - 1) // CHUNK
    model: MiniLM | None = None
    parts = []
    made = 0
    started = time.perf_counter()
    for i in range(chunks):
        path = cache_dir() / f"emb-{i:04d}.npy"
        if not path.exists():
            model = model or MiniLM()
            # One BLAS thread: on a busy 2-core box threaded BLAS spent ~5x the CPU per
            # sentence (threads spinning while waiting for each other).
            with threadpool_limits(1):
                vectors = model.embed(texts[i * CHUNK : (i + 1) * CHUNK])
            np.save(path.with_suffix(".tmp.npy"), vectors)
            path.with_suffix(".tmp.npy").rename(path)
            made += CHUNK
            rate = made / (time.perf_counter() - started)
            print(f"embedding: chunk {i + 1}/{chunks} ({rate:.0f} sentences/s)", flush=True)
        parts.append(np.load(path))
    return np.ascontiguousarray(np.concatenate(parts)[:count], dtype=np.float32)


def fingerprint(texts: list[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]


def real(n: int, queries: int, k: int = 10) -> tuple[Dataset, str]:
    """Embeddings of man-page sentences: held-out queries, exact top-k by L2."""
    matrix = embeddings(queries + n)
    held_out, vectors = matrix[:queries], np.ascontiguousarray(matrix[queries:])
    exact = faiss.IndexFlatL2(vectors.shape[1])
    exact.add(vectors)
    _, truth = exact.search(held_out, k)
    texts = cached_sentences()[: queries + n]
    label = (
        f"{n:,} sentences from this machine's man pages (corpus {fingerprint(texts)}), "
        f"{queries:,} held-out sentences as queries, all-MiniLM-L6-v2 (384-d, unit length)"
    )
    return Dataset(vectors, np.ascontiguousarray(held_out), truth, 0), label


def load(n: int, queries: int) -> tuple[Dataset, str]:
    """Real embeddings, or, only if the model package or the corpus is missing, a
    Gaussian mixture that the label says plainly is synthetic."""
    try:
        return real(n, queries)
    except (ModuleNotFoundError, ValueError) as exc:
        print(f"SYNTHETIC DATA: real embeddings unavailable ({exc})")
        data = gaussian_mixture(n, 384, queries)
        return data, f"SYNTHETIC Gaussian mixture {n:,} x 384 (real embeddings unavailable: {exc})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=MAX_SENTENCES)
    args = parser.parse_args()
    print(embeddings(args.count).shape)


if __name__ == "__main__":
    main()
