"""The two kinds of ``conntrack`` failures and how they are reported."""

from __future__ import annotations

PARAMETER_PROBLEM = 2
OTHER_PROBLEM = 1


class CtError(Exception):
    """A fatal diagnostic: ``msg`` goes to stderr after the program prefix.

    Exit status 2 ("parameter problem") adds the hint line pointing at ``--help``.
    """

    def __init__(self, msg: str, status: int = OTHER_PROBLEM) -> None:
        super().__init__(msg)
        self.msg = msg
        self.status = status


class ParamError(CtError):
    """A command-line problem: exit status 2."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, PARAMETER_PROBLEM)
