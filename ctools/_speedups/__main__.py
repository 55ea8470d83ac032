"""``python -m ctools._speedups``: build the C accelerators in place."""

from ctools._speedups import build

for path in build():
    print(path)
