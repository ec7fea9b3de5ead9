"""Helpers shared by bridged's tests: PKI, real TLS servers, a pty host, waiting."""
