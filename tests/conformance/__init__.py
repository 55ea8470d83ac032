"""Differential helpers and the conformance runner for the ``conntrack`` CLI tests."""
