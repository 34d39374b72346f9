"""Reading files that users hand us, without trusting them.

* :func:`read_torch_file` -- a ``torch.save`` zip archive read with ``weights_only=True`` (no
  arbitrary unpickling), after checking that every member is stored uncompressed and that the
  members add up to no more than the file itself: a small file can then never expand into a large
  allocation. Every member's CRC-32 is verified, so a flipped bit in a stored tensor is refused
  rather than loaded as changed weights. Anything else raises ``ValueError`` naming the file.
* :func:`parse_json` -- JSON text of bounded length and depth, as a ``ValueError`` when malformed.
* :func:`bounded_int` -- a whole number within a cap, for sizes read from files.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import torch

#: Longest JSON configuration read from a file (characters).
MAX_JSON_CHARS = 1_000_000
#: Most members a torch archive may hold (one per tensor, plus a few).
MAX_MEMBERS = 100_000


def read_torch_file(path: Path, what: str) -> Any:
    """The object saved in ``path`` by ``torch.save``, read safely, or ``ValueError``."""
    corrupt = f"{path} is not a readable {what} (truncated or corrupt?)"
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{corrupt}: it is not a torch zip archive.")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise ValueError(f"{corrupt}: {type(error).__name__}.") from None
    if len(members) > MAX_MEMBERS:
        raise ValueError(f"{corrupt}: it has {len(members):,} members.")
    compressed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
    if compressed:
        raise ValueError(
            f"{path} has compressed members ({compressed[:3]}); torch.save stores tensors "
            "uncompressed, and pyro_vae refuses what could expand beyond the file's size."
        )
    declared = sum(m.file_size for m in members)
    if declared > path.stat().st_size:
        raise ValueError(f"{corrupt}: its members declare {declared:,} bytes in a file of {path.stat().st_size:,}.")
    damaged = _first_damaged_member(path)
    if damaged is not None:
        raise ValueError(
            f"{path} is damaged: the stored data of {damaged!r} does not match the checksum written with it "
            "(a changed bit, or a partial copy). Restore the file from a copy."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for damaged or foreign archives
        kind = (
            "it holds objects other than tensors and plain containers, which pyro_vae never unpickles"
            if "Unpickl" in type(error).__name__ or "weights_only" in str(error)
            else type(error).__name__
        )
        raise ValueError(f"{corrupt}: {kind}.") from None


def _first_damaged_member(path: Path) -> str | None:
    """The first member whose bytes fail the CRC-32 the archive stores for it (``torch.save``
    writes one per member, tensors included), or ``None``; reads the file once."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        return f"<archive: {type(error).__name__}>"


def read_text_at_most(path: Path, limit: int, what: str) -> str:
    """The text of ``path`` if it has at most ``limit`` characters, read without reading more than
    that (a huge or sparse file costs nothing), else ``ValueError`` naming ``what``."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        text = handle.read(limit + 1)
    if len(text) > limit:
        raise ValueError(f"{path} is longer than {limit:,} characters, more than {what} can be.")
    return text


def parse_json(text: Any, where: str) -> Any:
    """``json.loads(text)`` for a string of bounded length, as ``ValueError`` naming ``where`` if malformed."""
    if not isinstance(text, str):
        raise ValueError(f"{where} is not JSON text (got {type(text).__name__}).")
    if len(text) > MAX_JSON_CHARS:
        raise ValueError(f"{where} is {len(text):,} characters long, more than a configuration can be.")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"{where} is not valid JSON ({type(error).__name__}).") from None


def bounded_int(value: Any, name: str, cap: int, where: str, *, minimum: int = 1) -> int:
    """``value`` if it is a whole number in ``[minimum, cap]`` (not a bool), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= cap:
        raise ValueError(f"{where}: {name} must be a whole number from {minimum} to {cap:,}, got {value!r}.")
    return value
