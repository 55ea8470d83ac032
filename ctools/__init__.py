"""ctools: netfilter's conntrack-tools rebuilt in Python."""

__version__ = "0.1.0"
