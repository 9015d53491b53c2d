"""Dashboard sign-in sessions: the model (pure) and where they are kept (SQLite, memory)."""
