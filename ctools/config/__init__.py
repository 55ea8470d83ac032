"""ctools/config."""
