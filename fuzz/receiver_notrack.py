"""Harness: the NOTRACK protocol core fed arbitrary message sequences (see fuzz/receivers.py)."""

from __future__ import annotations

import receivers

CORPUS = "receiver"


def TestOneInput(data: bytes) -> None:
    receivers.test_one_input("notrack", data)
