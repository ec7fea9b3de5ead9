"""Module profile files: reading, validating and writing the YAML that
``modem.profile_file`` names (``bridged selftest`` writes one).

The profile itself and its validation are pure (:mod:`bridged.core.module_profile`); this
module adds the file and the YAML around them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from bridged.core.module_profile import (
    ModuleProfile,
    ModuleProfileError,
    builtin_profile,
    profile_from_mapping,
    profile_overrides,
)


def load_profile_file(path: str | Path) -> ModuleProfile:
    """Read, parse and validate a profile file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModuleProfileError(source, [f"cannot read the file: {exc}"]) from None
    return parse_profile_text(text, source)


def parse_profile_text(text: str, source: str = "<profile>") -> ModuleProfile:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModuleProfileError(source, [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise ModuleProfileError(source, ["the file must be a mapping with at least 'base'"])
    return profile_from_mapping(data, source)


def resolve_profile(model: str, profile_file: str | Path | None = None) -> ModuleProfile | None:
    """The profile for ``modem.model`` / ``modem.profile_file``; None for ``auto``.

    A profile file wins over the model (it names its own base); ModuleProfileError if it
    is invalid, KeyError for an unknown model.
    """
    if profile_file is not None:
        return load_profile_file(profile_file)
    if model == "auto":
        return None
    return builtin_profile(model)


def profile_yaml(profile: ModuleProfile, base: ModuleProfile, comments: Sequence[str] = ()) -> str:
    """A profile file: ``base`` and the differences; ``comments`` go on top."""
    data = {"base": base.name, **profile_overrides(profile, base)}
    head = "".join(f"# {line}\n" for line in comments)
    return head + yaml.safe_dump(data, sort_keys=False)
