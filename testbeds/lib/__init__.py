"""Helpers behind the testbeds fixtures: real servers on loopback ports."""
