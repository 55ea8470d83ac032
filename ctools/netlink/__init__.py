"""ctools/netlink."""
