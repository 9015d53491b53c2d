"""VectorPanda: a hosted multi-tenant vector database."""

__version__ = "0.1.0"
