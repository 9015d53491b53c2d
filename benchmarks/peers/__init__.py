"""VectorPanda against its peers (PostgreSQL + pgvector, Chroma, raw FAISS) on the same
real sentence embeddings: ``make bench-peers``; see ``benchmarks/peers/run.py``."""
