"""How fast :class:`bridged.core.at_codec.ATDecoder` parses recv URCs of the largest size.

    python -m tests.bench.codec [--seconds S] [--json FILE]

Feeds a stream of ``+QSSLURC: "recv",1,<id>,<n>,"<data>"`` lines (650 bytes hex, 1300
text: the module's maxima) to one decoder in pieces of a given size, as serial reads
would deliver them, and reports serial megabytes parsed a second (and payload MB/s).
For scale: a 921600-baud line carries 0.092 MB/s.
"""

from __future__ import annotations

import argparse
import json
import time

from bridged.core.at_codec import ATDecoder, DataFormat, RecvUrc

PIECES = (64, 512, 4096)
URCS_PER_BLOCK = 60


def stream(data_format: DataFormat) -> tuple[bytes, int]:
    """A block of max-size recv URCs on all six sockets: (serial bytes, payload bytes)."""
    size = data_format.max_recv
    lines = []
    for i in range(URCS_PER_BLOCK):
        connect_id = i % 6
        payload = bytes((i + j) % 256 for j in range(size))
        # Text data may hold quotes and line ends: the decoder must count bytes.
        body = payload.hex().upper().encode() if data_format is DataFormat.HEX else payload
        head = b'\r\n+QSSLURC: "recv",1,%d,%d,"' % (connect_id, size)
        lines.append(head + body + b'"\r\n')
    return b"".join(lines), size * URCS_PER_BLOCK


def measure(data_format: DataFormat, piece: int, seconds: float) -> dict[str, float]:
    block, payload = stream(data_format)
    pieces = [block[i : i + piece] for i in range(0, len(block), piece)]
    decoder = ATDecoder()
    for connect_id in range(6):
        decoder.set_recv_format(connect_id, data_format)
    blocks = 0
    urcs = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for part in pieces:
            for event in decoder.feed(part):
                if type(event) is RecvUrc:
                    urcs += 1
        blocks += 1
    elapsed = time.perf_counter() - start
    if urcs != blocks * URCS_PER_BLOCK:
        raise AssertionError(f"decoded {urcs} URCs, expected {blocks * URCS_PER_BLOCK}")
    return {
        "serial_mb_s": blocks * len(block) / elapsed / 1e6,
        "payload_mb_s": blocks * payload / elapsed / 1e6,
        "urcs_s": urcs / elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.codec")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    results = []
    print("| format | recv URC | bytes per feed | serial MB/s | payload MB/s | URCs/s |")
    print("|---|---|---|---|---|---|")
    for data_format in (DataFormat.HEX, DataFormat.TEXT):
        for piece in PIECES:
            r = measure(data_format, piece, args.seconds)
            results.append({"format": data_format.name.lower(), "piece": piece, **r})
            print(
                f"| {data_format.name.lower()} | {data_format.max_recv} B | {piece} | "
                f"{r['serial_mb_s']:.1f} | {r['payload_mb_s']:.1f} | {r['urcs_s']:.0f} |"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
