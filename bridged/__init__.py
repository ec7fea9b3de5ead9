"""bridged: the Quectel BC26/BC20 SSL sockets as local TCP listeners."""

__version__ = "0.1.0"
