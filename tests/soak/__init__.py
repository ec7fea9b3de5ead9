"""The fault-injection soak: ``python -m tests.soak --minutes 10`` (see soak.py)."""
