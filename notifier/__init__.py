"""notifier component."""
