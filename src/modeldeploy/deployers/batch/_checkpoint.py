"""Checkpoints of a batch run: finished chunks on disk, so a killed run resumes where it stopped.

Next to the output ``scores.parquet`` a run keeps ``scores.parquet.partial/``::

    manifest.json       what run this is (source, chunking, model, method): resume refuses others
    done.jsonl          one line per finished chunk (scored or skipped) with a hash of the rows
                        it read, appended and fsynced
    part-00000012.parquet   the scores of chunk 12, written to a temp name, fsynced, renamed

A part is on disk before its line is in ``done.jsonl``, so a line always names a complete part;
a part without a line (killed in between) is scored again. At the end the parts are assembled
into a temp file next to the output, fsynced and renamed over it (``os.replace``), so a reader
sees the old file or the complete new one, never half of one; then the directory is removed.

A resumed run reads each finished chunk of the source again (it does not score it) and compares
its hash with the one recorded: a source whose already-scored rows changed since (a file
rewritten with the same size, another array or generator of the same shape) is refused, so one
output never mixes two datasets. Rows no run has scored yet are read as they are now.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modeldeploy._files import fsync_dir, fsync_file, write_atomic
from modeldeploy.deployers.batch._inputs import ChunkRef
from modeldeploy.deployers.batch._outputs import Output
from modeldeploy.exceptions import InvalidParameterError

__all__ = ["Checkpoint", "Entry"]

logger = logging.getLogger("modeldeploy.batch")

#: 2: finished chunks carry the hash of their rows.
_MANIFEST_VERSION = 2


@dataclass(frozen=True)
class Entry:
    """One finished chunk: scored (``reason is None``) or skipped (``reason`` says why).

    ``digest`` is the hash of the rows read (`Chunk.digest`), ``None`` when they could not
    be read.
    """

    index: int
    start: int
    stop: int
    reason: str | None = None
    digest: str | None = None


class Checkpoint:
    """The ``<output>.partial/`` directory of one run.

    Parameters
    ----------
    output
        The writer of the final file.
    fingerprint
        What identifies the run; a checkpoint made with another fingerprint is not resumed.
    """

    def __init__(self, output: Output, fingerprint: dict[str, Any]) -> None:
        self.output = output
        self.fingerprint = fingerprint
        self.dir = output.path.with_name(output.path.name + ".partial")
        self._log: Any = None

    def _part(self, index: int) -> Path:
        return self.dir / f"part-{index:08d}{self.output.suffix}"

    def open(self, *, resume: bool) -> dict[int, Entry]:
        """Start or resume; return the chunks already finished (empty when starting afresh).

        Raises
        ------
        InvalidParameterError
            When resuming a checkpoint that another run (other source, chunking, model or
            method) left behind.
        """
        done: dict[int, Entry] = {}
        if self.dir.exists() and resume:
            done = self._read()
        elif self.dir.exists():
            logger.info("Discarding the checkpoint %s (resume=False).", self.dir)
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not done:
            manifest = {"version": _MANIFEST_VERSION, "run": self.fingerprint}
            write_atomic(self.dir / "manifest.json", json.dumps(manifest, indent=1).encode())
        # Rewrite the log from what was read, so a line torn by a kill never prefixes a new one.
        lines = "".join(json.dumps(e.__dict__) + "\n" for e in done.values())
        write_atomic(self.dir / "done.jsonl", lines.encode())
        self._log = open(self.dir / "done.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        if done:
            logger.info("Resuming from %s: %d chunks already finished.", self.dir, len(done))
        return done

    def _read(self) -> dict[int, Entry]:
        try:
            manifest = json.loads((self.dir / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            logger.warning("The checkpoint %s has no readable manifest; starting over.", self.dir)
            return {}
        if manifest.get("version") != _MANIFEST_VERSION:
            raise InvalidParameterError(
                f"The checkpoint {str(self.dir)!r} was written by another version of modeldeploy "
                f"(format {manifest.get('version')!r}, this one reads {_MANIFEST_VERSION}), which "
                "cannot be checked against the source. Run with resume=False to start over."
            )
        if manifest.get("run") != json.loads(json.dumps(self.fingerprint)):
            raise InvalidParameterError(
                f"The checkpoint {str(self.dir)!r} was left by another run (recorded "
                f"{manifest.get('run')!r}; this run is {self.fingerprint!r}). Delete the "
                "directory, or run with resume=False to start over."
            )
        done: dict[int, Entry] = {}
        try:
            text = (self.dir / "done.jsonl").read_text(encoding="utf-8")
        except OSError:
            return done
        for line in text.splitlines():
            try:
                entry = Entry(**json.loads(line))
            except (ValueError, TypeError):
                continue  # the line being written when the run was killed
            scored = entry.reason is None and entry.stop > entry.start
            if scored and not self._part(entry.index).exists():
                continue
            done[entry.index] = entry
        return done

    def verify(self, entry: Entry, ref: ChunkRef) -> None:
        """Check that a finished chunk's rows are still those it scored; raise if not.

        Raises
        ------
        InvalidParameterError
            When the chunk's rows (or their number) differ from those the checkpoint recorded.
        """
        if entry.digest is None:
            return  # the rows could not be read last time: nothing was taken from them
        chunk = ref.load()
        found = chunk.digest() if (chunk.start, chunk.stop) == (entry.start, entry.stop) else None
        if found == entry.digest:
            return
        what = (
            f"its rows differ from those scored (hash {entry.digest[:12]}..., now {found[:12]}...)"
            if found is not None
            else f"it now holds rows {chunk.start}..{chunk.stop - 1}"
        )
        raise self._changed(entry, what)

    def refuse_missing(self, done: dict[int, Entry], seen: set[int]) -> None:
        """Raise when chunks the checkpoint finished are no longer in the source."""
        missing = sorted(set(done) - seen)
        if missing:
            raise self._changed(done[missing[0]], "the source now ends before it")

    def _changed(self, entry: Entry, what: str) -> InvalidParameterError:
        return InvalidParameterError(
            f"Cannot resume into {str(self.output.path)!r}: chunk {entry.index} (rows "
            f"{entry.start}..{entry.stop - 1}) was scored by the interrupted run, but {what}. "
            "The source changed since, and resuming would mix two datasets in one output. "
            "Restore the original source and resume, or run with resume=False to score the "
            "current one from the start."
        )

    def record(
        self,
        entry: Entry,
        y: np.ndarray | None = None,
        ids: dict[str, np.ndarray] | None = None,
        columns: list[str] | None = None,
    ) -> None:
        """Make one finished chunk durable: its part first (when scored), then its log line."""
        if y is not None:
            part = self._part(entry.index)
            tmp = part.with_name(part.name + ".tmp")
            self.output.write_part(tmp, y, ids, columns or [])
            fsync_file(tmp)
            os.replace(tmp, part)
        self._log.write(json.dumps(entry.__dict__) + "\n")
        self._log.flush()
        os.fsync(self._log.fileno())

    def finish(self, entries: dict[int, Entry], n_rows: int) -> None:
        """Assemble the parts into the output, atomically, and remove the checkpoint."""
        self.close()
        ordered = sorted(entries.values(), key=lambda e: e.index)
        parts = [
            (None if e.reason or e.stop == e.start else self._part(e.index), e.start, e.stop)
            for e in ordered
        ]
        target = self.output.path
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            self.output.assemble(parts, n_rows, tmp)
            fsync_file(tmp)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        fsync_dir(target.parent)
        shutil.rmtree(self.dir, ignore_errors=True)

    def close(self) -> None:
        """Close the log (the checkpoint stays on disk for a later ``resume=True``)."""
        if self._log is not None:
            self._log.close()
            self._log = None
