"""scheduler component."""
