"""Check a conntrackd.conf: ``python -m ctools.config [--dump] [FILE]``.

Prints every warning and, on success, a one-line summary (or with ``--dump`` the effective
configuration with every default written out). Exit status 0 when the file is usable, 1 when
it is refused (the error names file:line:column), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys

from . import DEFAULT_CONFIG_FILE, Config, ConfigError, dump, load


def summary(cfg: Config) -> str:
    """One line saying what the configuration makes the daemon do."""
    if cfg.sync is not None:
        s = cfg.sync
        links = ", ".join(f"{c.kind}{' (default)' if c is s.default_channel else ''}"
                          f" {c.address or '?'} on {c.interface or '?'}" for c in s.channels)
        return f"sync mode {s.mode.upper()}, {len(s.channels)} link(s): {links or 'none'}"
    if cfg.stats is not None:
        return f"statistics mode, flow log {cfg.stats.log_file or 'off'}"
    return "no Sync or Stats section: the daemon would only serve its control socket"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ctools.config",
                                 description="Check a conntrackd.conf file (ctools).")
    ap.add_argument("file", nargs="?", default=DEFAULT_CONFIG_FILE,
                    help=f"configuration file (default {DEFAULT_CONFIG_FILE})")
    ap.add_argument("--dump", action="store_true",
                    help="print the effective configuration, defaults included")
    args = ap.parse_args(argv)
    try:
        cfg = load(args.file)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for warning in cfg.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if cfg.helper is not None and cfg.helper.types:
        # valid grammar, but the daemon will not start with it (docs/compat-helper.md)
        names = ", ".join(t.name for t in cfg.helper.types)
        print(f"warning: {args.file}: Helper Type ({names}): ctools runs no user-space "
              "helpers, conntrackd will refuse to start with this section", file=sys.stderr)
    if args.dump:
        sys.stdout.write(dump(cfg))
    else:
        print(f"{args.file}: OK, {summary(cfg)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
