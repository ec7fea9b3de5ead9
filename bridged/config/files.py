"""What depends on this host: the certificate files (readable, private, PEM) and the
control socket's group. Messages never contain file contents."""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path
from typing import Final

from bridged.config.document import Document
from bridged.config.errors import ConfigIssue, KeyPath
from bridged.config.model import Config

__all__ = ["check_files"]

_PEM_FIELDS: Final = ("cacert", "clientcert", "clientkey")
# PEMs are uploaded through the AT prompt; anything this big is surely the wrong file.
_MAX_PEM_BYTES: Final = 64 * 1024


def check_files(config: Config, doc: Document) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    checked: set[KeyPath] = set()
    for index, sock in enumerate(config.sockets):
        for name in _PEM_FIELDS:
            path = getattr(sock.ssl, name)
            origin = doc.ssl_origin(index, name)
            if path is None or origin is None or origin in checked:
                continue
            checked.add(origin)
            issues.extend(doc.issue(origin, problem) for problem in _pem_problems(path, name))
    group = config.control.group
    if group is not None:
        try:
            grp.getgrnam(group)
        except KeyError:
            issues.append(doc.issue(("control", "group"), f"no such group {group!r}"))
    return issues


def _pem_problems(path: Path, name: str) -> list[str]:
    """What is wrong with a certificate/key file. Never quotes the file's content."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return [f"cannot read {path}: {exc.strerror}"]
    if stat.S_ISDIR(info.st_mode):
        return [f"{path} is a directory, not a PEM file"]
    if not stat.S_ISREG(info.st_mode):
        return [f"{path} is not a regular file"]
    # os.access answers for the real uid (root passes everything); open() is the real test.
    if not os.access(path, os.R_OK):
        return [f"cannot read {path}: permission denied for uid {os.getuid()}"]
    if info.st_size > _MAX_PEM_BYTES:
        return [f"{path} is {info.st_size} bytes; a PEM {name} is at most {_MAX_PEM_BYTES}"]
    problems = []
    if name == "clientkey" and info.st_mode & 0o077:
        problems.append(
            f"{path} is accessible by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"a private key must be private: chmod 600 {path}"
        )
    try:
        with open(path, "rb") as file:
            content = file.read(_MAX_PEM_BYTES + 1)
    except OSError as exc:
        return [*problems, f"cannot read {path}: {exc.strerror}"]
    problem = _pem_content_problem(content, name)
    if problem:
        problems.append(f"{path} {problem}")
    return problems


def _pem_content_problem(content: bytes, name: str) -> str | None:
    body = content.lstrip()
    if not body.startswith(b"-----BEGIN "):
        return "is not a PEM file (it must start with '-----BEGIN')"
    label = body[len(b"-----BEGIN ") :].split(b"-----", 1)[0]
    if name == "clientkey":
        if label.startswith(b"ENCRYPTED") or b"Proc-Type: 4,ENCRYPTED" in body:
            return "is an encrypted private key; the module cannot decrypt it (store it plain)"
        if not label.endswith(b"PRIVATE KEY"):
            return "is not a PEM private key (expected '-----BEGIN ... PRIVATE KEY-----')"
    elif label != b"CERTIFICATE":
        return "is not a PEM certificate (expected '-----BEGIN CERTIFICATE-----')"
    if b"-----END " not in body:
        return "is truncated (no '-----END' line)"
    # Uploaded through the AT prompt: 0x1A ends and 0x1B cancels the upload.
    if any(byte > 0x7E or (byte < 0x20 and byte not in b"\t\r\n") for byte in content):
        return "contains bytes other than printable ASCII, which the AT upload cannot carry"
    return None
