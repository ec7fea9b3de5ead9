"""Uploaded PEMs as files for OpenSSL, in a private directory (0700, files 0600)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


class CertStore:
    def __init__(self) -> None:
        self._dir: Path | None = None  # made on first use

    def _directory(self) -> Path:
        if self._dir is None:
            # mkdtemp makes the directory 0700.
            self._dir = Path(tempfile.mkdtemp(prefix="bridged-emulator-certs-"))
        return self._dir

    def write(self, connect_id: int, name: str, pem: bytes) -> str:
        """Write ``pem`` for ``connect_id``'s ``name`` (cacert, …); its path."""
        path = self._directory() / f"{connect_id}-{name}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return str(path)

    def forget(self, connect_id: int | None = None) -> None:
        """Delete one socket's files, or all of them."""
        if self._dir is None:
            return
        pattern = "*.pem" if connect_id is None else f"{connect_id}-*.pem"
        for path in self._dir.glob(pattern):
            path.unlink(missing_ok=True)

    def remove(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
