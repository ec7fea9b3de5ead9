"""The configured module: its profile, and what the configuration asks that it cannot do."""

from __future__ import annotations

from bridged.config.document import Document
from bridged.config.errors import ConfigIssue, KeyPath
from bridged.config.model import Config
from bridged.config.module_profile_file import resolve_profile
from bridged.core.module_profile import (
    MODEL_CHOICES,
    ModuleProfile,
    ModuleProfileError,
)

__all__ = ["check_model", "module_profile"]


def module_profile(config: Config) -> ModuleProfile | None:
    """The configured module's profile (None: ``model: auto``, known at start).

    Raises ModuleProfileError for a bad profile file (load_config reports it as an issue).
    """
    return resolve_profile(config.modem.model, config.modem.profile_file)


def check_model(config: Config, doc: Document, check_host: bool) -> list[ConfigIssue]:
    """What the configured module cannot do: a socket it lacks, a TLS version it refuses."""
    assert config.modem.model in MODEL_CHOICES  # the schema's enum
    if config.modem.profile_file is not None and not check_host:
        return []  # the profile file is this host's, like the certificates
    try:
        profile = module_profile(config)
    except ModuleProfileError as exc:
        return [doc.issue(("modem", "profile_file"), "; ".join(exc.problems))]
    if profile is None:
        return []
    origin: KeyPath = (
        ("modem", "profile_file") if config.modem.profile_file is not None else ("modem", "model")
    )
    named = (
        f"the {profile.label} (modem.model)"
        if origin[1] == "model"
        else f"the {profile.label} ({config.modem.profile_file})"
    )
    if not doc.has(origin):
        named = f"the {profile.label} (the default modem.model)"
    issues = []
    version_origins: set[KeyPath] = set()
    for index, sock in enumerate(config.sockets):
        if sock.connect_id not in profile.connect_ids:
            issues.append(
                doc.issue(
                    ("sockets", index, "connect_id"),
                    f"{sock.connect_id}: {named} has {profile.connect_ids_text()}",
                )
            )
        if sock.ssl.sslversion not in profile.ssl_versions:
            where = doc.ssl_origin(index, "sslversion") or ("sockets", index)
            if where in version_origins:
                continue
            version_origins.add(where)
            issues.append(
                doc.issue(
                    where,
                    f"sslversion {sock.ssl.sslversion} is not supported by {named} "
                    f"(it takes {', '.join(map(str, profile.ssl_versions))})",
                )
            )
    return issues
