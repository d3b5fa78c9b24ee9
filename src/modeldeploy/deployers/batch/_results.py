"""What a [`BatchDeployer`][modeldeploy.BatchDeployer] run reports:
[`BatchResult`][modeldeploy.BatchResult]."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BatchResult", "SkippedChunk"]


@dataclass(frozen=True)
class SkippedChunk:
    """A chunk left out of the output by ``on_error="skip"``.

    Attributes
    ----------
    chunk
        Index of the chunk, from 0.
    start, stop
        Global row range ``start:stop`` of the chunk.
    reason
        The error that made it skipped.
    """

    chunk: int
    start: int
    stop: int
    reason: str

    @property
    def rows(self) -> range:
        """The global row numbers of the skipped rows."""
        return range(self.start, self.stop)


@dataclass(frozen=True)
class BatchResult:
    """What a batch run did: nothing is silent.

    Attributes
    ----------
    rows
        Rows scored into the output (including those of resumed chunks).
    seconds
        Wall-clock time of this run.
    chunks
        Chunks in the source (scored, resumed, skipped or empty).
    skipped
        The chunks left out by ``on_error="skip"``, with their rows and the reason.
    output
        The output file, or ``None`` for an in-memory run.
    resumed_chunks
        Chunks taken from a checkpoint instead of being scored again.
    """

    rows: int
    seconds: float
    chunks: int
    skipped: tuple[SkippedChunk, ...] = ()
    output: Path | None = None
    resumed_chunks: int = 0

    @property
    def skipped_rows(self) -> int:
        """Number of rows in skipped chunks."""
        return sum(s.stop - s.start for s in self.skipped)

    @property
    def rows_per_second(self) -> float:
        """Scoring throughput of this run."""
        return self.rows / self.seconds if self.seconds > 0 else math.inf

    def __repr__(self) -> str:
        out = f", output={str(self.output)!r}" if self.output is not None else ""
        resumed = f", resumed_chunks={self.resumed_chunks}" if self.resumed_chunks else ""
        return (
            f"BatchResult(rows={self.rows}, chunks={self.chunks}, skipped={len(self.skipped)} "
            f"chunks / {self.skipped_rows} rows, seconds={self.seconds:.3f}{resumed}{out})"
        )

    def _repr_html_(self) -> str:
        rows = [
            ("rows scored", f"{self.rows:,}"),
            ("chunks", f"{self.chunks:,}"),
            ("seconds", f"{self.seconds:.3f}"),
            ("rows/s", f"{self.rows_per_second:,.0f}"),
            ("resumed chunks", f"{self.resumed_chunks:,}"),
            ("output", str(self.output) if self.output is not None else "in memory"),
        ]
        body = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        skipped = ""
        if self.skipped:
            items = "".join(
                f"<tr><td>{s.chunk}</td><td>{s.start}..{s.stop - 1}</td>"
                f"<td>{html.escape(s.reason)}</td></tr>"
                for s in self.skipped[:20]
            )
            more = f"<p>... and {len(self.skipped) - 20} more</p>" if len(self.skipped) > 20 else ""
            skipped = (
                f"<table><caption>{len(self.skipped)} skipped chunks ({self.skipped_rows:,} rows)"
                f"</caption><thead><tr><th>chunk</th><th>rows</th><th>reason</th></tr></thead>"
                f"<tbody>{items}</tbody></table>{more}"
            )
        return f"<table><caption>BatchResult</caption><tbody>{body}</tbody></table>{skipped}"
