"""Benchmarks of bridged against the emulator at realistic line rates.

    python -m tests.bench [--quick | --smoke] [--scenario P1 P2 ...]
    python -m tests.bench.codec          # AT decoder parse rate (recv URCs)

See docs/performance.md for what the scenarios measure and what the numbers mean.
"""
