"""The ``Monitor.save`` file: one ``.npz`` of counts and sketches, never rows, and its format.

The state is one flat mapping: numpy arrays become arrays of the file, everything else goes in
a JSON header (the ``meta`` array). Each part of the monitor gives its own entries (see their
``to_state``); their keys do not overlap. Format 1 files (before per-version windows) and
format 2 files of every earlier release load.
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from modeldeploy.exceptions import StateFileError

__all__ = ["STATE_FORMAT", "read_state", "state_bytes", "state_file_errors", "write_state"]

STATE_FORMAT = 2  # 1: before per-version windows (still loads)
_FORMATS = (1, STATE_FORMAT)


def state_bytes(state: Mapping[str, Any]) -> bytes:
    """A state as the bytes of its ``.npz`` file."""
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    meta = {"format": STATE_FORMAT}
    meta.update({k: v for k, v in state.items() if not isinstance(v, np.ndarray)})
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    blob = io.BytesIO()
    np.savez_compressed(blob, allow_pickle=False, **arrays)
    return blob.getvalue()


def write_state(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write a state atomically (a temporary file, fsync, rename); return the path.

    The temporary file's name is unique to the process and thread, so concurrent writers of
    one path never mix their bytes: the last rename wins, whole.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(state_bytes(state))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def read_state(source: str | os.PathLike[str] | bytes) -> dict[str, Any]:
    """The state in a file (or in a file's bytes): the header's entries and the arrays.

    Raises
    ------
    StateFileError
        When the file is a state of another format (or no state at all).
    """
    path = "<bytes>" if isinstance(source, bytes) else source
    # Opened here so that the file is closed even when numpy fails half-way through it.
    with (
        io.BytesIO(source) if isinstance(source, bytes) else open(Path(source), "rb") as fh,
        np.load(fh, allow_pickle=False) as data,
    ):
        meta = json.loads(data["meta"].tobytes().decode())
        arrays = {k: np.asarray(data[k]) for k in data.files if k != "meta"}
    if not isinstance(meta, dict) or meta.get("format") not in _FORMATS:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise StateFileError(
            f"{os.fspath(path)!r} is not a Monitor state file of format {STATE_FORMAT} (got "
            f"{found!r}). Save it again with Monitor.save.",
            path=os.fspath(path),
        )
    return {**meta, **arrays}


@contextmanager
def state_file_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn any failure to read a state into a
    [`StateFileError`][modeldeploy.exceptions.StateFileError] naming the file.

    A missing or unreadable file keeps the ``FileNotFoundError`` or ``PermissionError`` the
    system gave.
    """
    try:
        yield
    except (StateFileError, FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as exc:  # zipfile, zlib, numpy's header parser, json, a missing key, ...
        raise StateFileError(
            f"Could not load a Monitor state from {os.fspath(path)!r}: the file is damaged, "
            f"truncated or not a file written by Monitor.save ({type(exc).__name__}: {exc}). "
            "Restore it from a backup, or start a new Monitor (its windows start empty).",
            path=os.fspath(path),
        ) from exc
