"""conntrackd.conf: the whole grammar of conntrack-tools 1.4.7 into a typed ``Config``.

Public API::

    from ctools.config import load, parse, dump, ConfigError, Config
    cfg = load("/etc/conntrackd/conntrackd.conf")   # ConfigError: str(e) = "path:line:col: msg"
    cfg = parse(text, filename="<string>")
    cfg.general / cfg.sync (None without Sync) / cfg.stats (None without Stats) / cfg.helper
    cfg.warnings                                     # what conntrackd would log as WARNING
    text = dump(cfg)                                 # parse(dump(cfg)) == cfg

Accepts exactly the files the C daemon accepts (docs/compat-config.md lists the deliberate
differences) plus two ctools extensions: ``Options { AuthenticationKeyFile /path }`` in Sync
and ``Metrics { Address A  Port P }`` in General.
"""

from __future__ import annotations

import os

from .dump import dump
from .errors import ConfigError
from .model import (
    DEFAULT_CONFIG_FILE,
    AddressFilter,
    Channel,
    Config,
    ConfigWarning,
    Filter,
    General,
    Helper,
    HelperPolicy,
    HelperType,
    McastChannel,
    Metrics,
    ProtocolFilter,
    Scheduler,
    StateFilter,
    Stats,
    Sync,
    SyncOptions,
    TcpChannel,
    UdpChannel,
    UnixSocket,
)
from .parser import parse_text

__all__ = [
    "DEFAULT_CONFIG_FILE", "AddressFilter", "Channel", "Config", "ConfigError",
    "ConfigWarning", "Filter", "General", "Helper", "HelperPolicy", "HelperType",
    "McastChannel", "Metrics", "ProtocolFilter", "Scheduler", "StateFilter", "Stats", "Sync",
    "SyncOptions", "TcpChannel", "UdpChannel", "UnixSocket", "dump", "load", "parse",
]


MAX_FILE_SIZE = 16 << 20


def parse(text: str | bytes, filename: str = "<string>") -> Config:
    """Parse configuration text (or raw bytes) into a ``Config``; raises ``ConfigError``."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text).decode("utf-8", "surrogateescape")
    return parse_text(text, filename)


def load(path: str | os.PathLike[str] = DEFAULT_CONFIG_FILE) -> Config:
    """Read and parse a configuration file; an unreadable file is a ``ConfigError`` too."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            data = fh.read(MAX_FILE_SIZE + 1)   # bounded: the path may name a device
    except OSError as exc:
        raise ConfigError(name, 0, 0, f"cannot open configuration file: {exc.strerror}") from None
    if len(data) > MAX_FILE_SIZE:
        raise ConfigError(name, 0, 0, f"configuration file larger than {MAX_FILE_SIZE} bytes")
    return parse(data, filename=name)
