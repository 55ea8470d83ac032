"""ctools/sync."""
