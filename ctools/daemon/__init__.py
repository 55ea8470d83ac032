"""ctools/daemon."""
