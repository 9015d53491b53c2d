"""projections component."""
