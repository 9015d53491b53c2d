"""api/routes component."""
