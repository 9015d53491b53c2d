"""eventlog component."""
