"""ctools/format."""
