"""coordinator component."""
