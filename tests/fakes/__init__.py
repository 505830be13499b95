"""Fakes at the transport boundary for the cloud provider tests (real HTTP servers on loopback)."""
