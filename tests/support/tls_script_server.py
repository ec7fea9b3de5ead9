"""A scripted TLS server for tests, run as its own process (stdlib only):

    python tls_script_server.py --port P --cert C --key K [--cafile CA]
        [--close-after N] [--abrupt] [--ciphers S]

Echoes what each client sends; with ``--close-after N`` it echoes the first N bytes
of a connection and then ends it: close_notify + FIN, or with ``--abrupt`` a bare
TCP reset. ``--cafile`` demands a client certificate signed by it.
Use :func:`tests.support.tls_servers.start_scripted_tls_server` to run it.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import ssl
import struct
import threading


def serve_connection(conn: ssl.SSLSocket, close_after: int | None, abrupt: bool) -> None:
    budget = close_after
    with contextlib.suppress(OSError):
        while budget is None or budget > 0:
            data = conn.recv(4096 if budget is None else min(4096, budget))
            if not data:
                break
            conn.sendall(data)
            if budget is not None:
                budget -= len(data)
        if abrupt:
            # SO_LINGER 0: close sends RST, no close_notify.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            conn.settimeout(1)
            with contextlib.suppress(OSError, ValueError):
                conn.unwrap()
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--cafile")
    parser.add_argument("--ciphers", default="ALL:@SECLEVEL=0")
    parser.add_argument("--close-after", type=int)
    parser.add_argument("--abrupt", action="store_true")
    args = parser.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers(args.ciphers)
    ctx.load_cert_chain(args.cert, args.key)
    if args.cafile:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(args.cafile)
    listener = socket.create_server(("127.0.0.1", args.port))
    while True:
        raw, _ = listener.accept()
        try:
            conn = ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            continue
        threading.Thread(
            target=serve_connection, args=(conn, args.close_after, args.abrupt), daemon=True
        ).start()


if __name__ == "__main__":
    main()
