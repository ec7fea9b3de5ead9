"""placeholder"""

from collections.abc import Sequence


def replay_main(argv: Sequence[str]) -> int:
    raise NotImplementedError
