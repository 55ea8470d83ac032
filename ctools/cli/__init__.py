"""ctools/cli."""
