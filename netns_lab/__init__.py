"""ctools' real-kernel fail-over lab: namespaces, an impaired sync link, replicas of either
conntrackd implementation, keepalived or a built-in fail-over driver, real traffic."""

from .config import Impairment, LabConfig, Lan
from .lab import FailoverTiming, Lab, Verdict, cleanup, list_labs

__all__ = ["FailoverTiming", "Impairment", "Lab", "LabConfig", "Lan", "Verdict", "cleanup",
           "list_labs"]
