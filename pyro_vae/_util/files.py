"""File writing: every file pyro_vae writes goes through :func:`atomic_write`, and a folder or
checkpoint written by one training at a time is held with a :class:`FileLock`."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

#: Temporary files of an interrupted write older than this are removed by the next write.
STALE_SECONDS = 600


class WriteError(OSError):
    """A file could not be written (a full disk, a read-only folder); its message is one line that
    names the file and says that nothing was changed."""

    def __str__(self) -> str:
        return str(self.strerror)


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it over ``path``.

    A crash at any moment leaves either the old file or the new one. The new file gets the old
    one's permissions (or the usual ones for a new file, from the umask). Temporary files left by a
    write that was killed long ago are removed. A write that fails for lack of space or permission
    (torch's writer reports it as a ``RuntimeError``) is a :class:`WriteError`, the old file intact.
    """

    def write_to(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())

    atomic_write_path(path, write_to)


def atomic_write_path(path: str | os.PathLike, write_to) -> None:
    """:func:`atomic_write` for writers that take a file name (``write_to(tmp_path)``, e.g. HDF5's)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as error:
        raise _write_error(path, error) from None
    try:
        write_to(Path(tmp))
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) or (isinstance(error, RuntimeError) and "write" in str(error).lower()):
            raise _write_error(path, error) from None
        raise
    _remove_stale_temporaries(path)


def _write_error(path: Path, error: BaseException) -> WriteError:
    reason = getattr(error, "strerror", None) or " ".join(str(error).split())[:200]
    try:
        free = shutil.disk_usage(path.parent if path.parent.exists() else Path.cwd()).free
        space = f"; {free / 2**20:,.1f} MB free on its disk"
    except OSError:
        space = ""
    kept = "the previous file is unchanged" if path.exists() else "nothing was written"
    return WriteError(getattr(error, "errno", None) or 0, f"Could not write {path} ({reason}{space}): {kept}.")


def check_free_space(folder: str | os.PathLike, needed_bytes: int, what: str) -> None:
    """Raise ``ValueError`` unless the disk holding ``folder`` has ``needed_bytes`` free: checked
    before long work whose files would not fit."""
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return
    if free < needed_bytes:
        raise ValueError(
            f"{what} needs about {needed_bytes / 2**20:,.1f} MB free in {folder}, but its disk has "
            f"{free / 2**20:,.1f} MB; free some space or write elsewhere."
        )


def write_json(path: str | os.PathLike, value: Any) -> Path:
    """Write ``value`` as indented JSON to ``path``, atomically."""
    path = Path(path)
    text = json.dumps(value, indent=1)
    atomic_write(path, lambda handle: handle.write(text.encode()))
    return path


def check_writable(folder: str | os.PathLike, what: str) -> None:
    """Raise ``ValueError`` unless files can be created in ``folder`` (created if missing): checked
    before long work, so that it does not fail only at its end."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".pyro_vae-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise ValueError(f"Cannot write {what} in {folder}: {error.strerror or error}.") from None


class FileLock:
    """An exclusive lock file holding the owner's process id, for one writer at a time.

    Entering creates ``path`` atomically; if it exists and its process still runs, ``ValueError``
    says who holds it (its ``holder``: a training, an evaluation, a report). A lock left by a process
    that no longer runs (killed) is taken over.
    """

    def __init__(self, path: str | os.PathLike, what: str, holder: str = "training"):
        self.path, self.what, self.holder = Path(path), what, holder

    def __enter__(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = _lock_owner(self.path)
                if owner is not None and owner != os.getpid() and _running(owner):
                    raise ValueError(
                        f"{self.what} is in use by another {_lock_holder(self.path)} (process {owner}); wait for it "
                        f"to finish. If no such process runs, delete {self.path}."
                    ) from None
                self.path.unlink(missing_ok=True)  # left by a process that is gone
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(f"{os.getpid()} {self.holder}")
            return self
        raise ValueError(f"Could not take the lock {self.path}; delete it if no training runs.")

    def __exit__(self, *exc: object) -> None:
        if _lock_owner(self.path) == os.getpid():
            self.path.unlink(missing_ok=True)


def _lock_owner(path: Path) -> int | None:
    try:
        return int((path.read_text().split() or ["x"])[0])
    except (OSError, ValueError):
        return None


def _lock_holder(path: Path) -> str:
    try:
        words = path.read_text().split()
    except OSError:
        return "training"
    return " ".join(words[1:]) or "training"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _remove_stale_temporaries(path: Path) -> None:
    cutoff = time.time() - STALE_SECONDS
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if stale.stat().st_mtime < cutoff:
                stale.unlink()
        except OSError:
            pass
