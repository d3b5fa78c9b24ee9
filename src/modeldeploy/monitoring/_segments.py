"""Append-only Parquet segments in a folder or an artifact store, written off the hot path.

`Location` is where segments go: a folder (written as temp file, fsync, rename) or a
registry's [`ArtifactStore`][modeldeploy.registry.stores.ArtifactStore] (one ``put`` per segment: a
single PUT on S3). `SegmentWriter` owns the bounded queue and the thread that turns
queued rows into segments, rotates them by rows, bytes and age, and spills what the location
cannot take to a local folder, from where it is sent again later.
[`PredictionCapture`][modeldeploy.monitoring.PredictionCapture] and
[`LabelCapture`][modeldeploy.monitoring.LabelCapture] hold one each.
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import socket
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modeldeploy._files import fsync_dir
from modeldeploy.exceptions import InvalidParameterError, MissingDependencyError
from modeldeploy.registry.stores import ArtifactStore, LocalArtifactStore, S3ArtifactStore
from modeldeploy.typing import Clock

#: How often the writer thread takes what callers queued (seconds): it is not woken per request.
POLL_S = 0.05

logger = logging.getLogger("modeldeploy.monitoring.capture")

#: The suffix of every segment (readers skip anything else, such as temp files).
SUFFIX = ".parquet"


def import_pyarrow(feature: str) -> Any:
    """``pyarrow`` (with ``pyarrow.parquet`` loaded), or the error naming the extra."""
    try:
        import pyarrow as pa
        import pyarrow.parquet  # loads the submodule onto pa
    except ImportError:
        raise MissingDependencyError("pyarrow", "pandas", feature) from None
    return pa


def writer_token() -> str:
    """A name for this writer, unique across hosts, processes and instances."""
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:32]
    return f"{host or 'host'}-{os.getpid()}-{secrets.token_hex(4)}"


class Location:
    """Where segments live: a folder, or keys under ``prefix/`` of an artifact store.

    Parameters
    ----------
    target
        A folder path, an [`ArtifactStore`][modeldeploy.registry.stores.ArtifactStore], or anything
        with an ``artifacts`` attribute holding one (a
        [`ModelRegistry`][modeldeploy.ModelRegistry]).
    prefix
        The sub-folder (or key prefix) of this kind of segment: ``"capture"``, ``"labels"``.
    owner
        The class named in error messages.
    """

    def __init__(self, target: Any, prefix: str, owner: str) -> None:
        self.prefix = prefix.strip("/")
        self.store: ArtifactStore | None = None
        self.folder: Path | None = None
        if isinstance(target, (str, os.PathLike)):
            self.folder = Path(target) / self.prefix
        elif isinstance(target, ArtifactStore):
            self.store = target
        elif isinstance(getattr(target, "artifacts", None), ArtifactStore):
            self.store = target.artifacts
        else:
            raise InvalidParameterError(
                f"The 'location' parameter of {owner} must be a folder path, an ArtifactStore or "
                f"a ModelRegistry (whose artifact store is used). Got {type(target).__name__} "
                "instead."
            )

    def __repr__(self) -> str:
        if self.folder is not None:
            return str(self.folder)
        return f"{self.store!r}/{self.prefix}"

    def __getstate__(self) -> dict[str, Any]:
        # Shipped to Dask workers (to_dask): the built-in stores hold locks and clients, so
        # they travel as what rebuilds them.
        state = dict(self.__dict__)
        store = self.store
        if isinstance(store, S3ArtifactStore):
            state["store"] = ("s3", store.url, store.max_retries, store.retry_timeout_s)
        elif isinstance(store, LocalArtifactStore):
            state["store"] = ("local", str(store.root))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        store = state.get("store")
        if isinstance(store, tuple) and store[0] == "s3":
            state["store"] = S3ArtifactStore(
                store[1], max_retries=store[2], retry_timeout_s=store[3]
            )
        elif isinstance(store, tuple) and store[0] == "local":
            state["store"] = LocalArtifactStore(store[1])
        self.__dict__.update(state)

    def put(self, name: str, source: Path) -> None:
        """Store the local file ``source`` as segment ``name``, atomically."""
        if self.store is not None:
            self.store.put(f"{self.prefix}/{name}", source)
            return
        assert self.folder is not None
        final = self.folder / name
        final.parent.mkdir(parents=True, exist_ok=True)
        staged = final.parent / f".{final.name}.{secrets.token_hex(4)}.part"
        try:
            with open(source, "rb") as src, open(staged, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(staged, final)
        finally:
            staged.unlink(missing_ok=True)
        fsync_dir(final.parent)

    def names(self) -> list[str]:
        """Every segment's name (its path below the prefix), sorted."""
        if self.store is not None:
            head = f"{self.prefix}/"
            keys = self.store.keys()
            found = [k[len(head) :] for k in keys if k.startswith(head)]
        else:
            assert self.folder is not None
            if not self.folder.is_dir():
                return []
            found = [
                p.relative_to(self.folder).as_posix()
                for p in self.folder.rglob(f"*{SUFFIX}")
                if not p.name.startswith(".")
            ]
        return sorted(n for n in found if n.endswith(SUFFIX))

    def source(self, name: str) -> Any:
        """What ``pyarrow.parquet.read_table`` reads segment ``name`` from."""
        if self.store is not None:
            return io.BytesIO(self.store.read(f"{self.prefix}/{name}"))
        assert self.folder is not None
        return str(self.folder / name)


class SegmentWriter:
    """A bounded queue of row batches turned into Parquet segments by a daemon thread.

    Parameters
    ----------
    location
        Where segments go.
    to_table
        Turns a list of queued items into one ``pyarrow.Table`` (called on the thread).
    spill
        A local folder for segments the location refused; they are sent again after the next
        segment that reaches the location, and by `resend`.
    max_queue
        Items the queue holds; past it `offer` refuses (and counts) at once.
    segment_rows, segment_bytes, segment_s
        A segment is written once it holds this many rows, or about this many bytes, or its
        first row has waited this long (seconds on ``clock.monotonic()``).
    clock
        Times the rotation and the warnings.
    name
        The kind of rows, for logs and the thread's name.
    """

    # The queue between callers and the thread (made by _new_queue, again after a fork).
    _lock: threading.Lock
    _pending: deque[tuple[Any, int]]
    _pending_rows: int
    _orders: deque[tuple[str, Any]]
    _wake: threading.Event
    _wake_items: int
    _idle: bool

    def __init__(
        self,
        location: Location,
        to_table: Callable[[list[Any]], Any],
        *,
        spill: Path,
        max_queue: int,
        segment_rows: int,
        segment_bytes: int,
        segment_s: float,
        clock: Clock,
        name: str,
    ) -> None:
        self.location = location
        self.to_table = to_table
        self.spill = spill
        self.segment_rows = segment_rows
        self.segment_bytes = segment_bytes
        self.segment_s = segment_s
        self.clock = clock
        self.name = name
        self.token = writer_token()
        self.counts = {
            "queued": 0,
            "written": 0,
            "dropped": 0,
            "spilled": 0,
            "resent": 0,
            "lost": 0,
            "segments": 0,
            "spilled_segments": 0,
        }
        self.max_queue = max_queue
        self._pid = os.getpid()
        self._new_queue()
        # Sending spilled segments waits on the location: never under _lock, which offer takes.
        self._resend_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._seq = 0
        self._warned_drops = 0
        self._last_warning = float("-inf")

    # ------------------------------------------------------------------ the caller's side

    def offer(self, item: Any, rows: int) -> bool:
        """Queue ``item`` (``rows`` rows) without waiting; False (counted) when full or closed."""
        if self._pid != os.getpid():
            self._after_fork()
        if self._thread is None:
            self._start()
        with self._lock:  # held for a few counter updates only: never across I/O
            self.counts["queued"] += rows
            pending = self._pending
            if self._closed or len(pending) >= self.max_queue:
                self.counts["dropped"] += rows
                return False
            pending.append((item, rows))
            self._pending_rows += rows
            # The writer is not woken for each request (a thread switch per request would cost
            # the caller more than the capture itself): an idle writer is woken by the first
            # request, a busy one drains the queue every POLL_S, or at once when a segment's
            # worth of rows or a quarter of the queue is waiting.
            wake = (
                self._idle
                or self._pending_rows >= self.segment_rows
                or len(pending) >= self._wake_items
            )
            self._idle = False
        if wake:
            self._wake.set()
        return True

    def flush(self, timeout: float) -> bool:
        """Write what was queued so far as a segment; False if that took over ``timeout`` s."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._control(("flush", done))
        return done.wait(timeout)

    def close(self, timeout: float) -> bool:
        """Write what is queued and stop, waiting at most ``timeout`` s; True when all was
        written (or spilled)."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
            thread = self._thread
        if thread is None:
            return True
        self._control(("close", None))
        thread.join(timeout)
        return not thread.is_alive()

    def resend(self) -> int:
        """Send spilled segments to the location now; return how many went."""
        return self._resend()

    def _after_fork(self) -> None:
        """A forked child (``gunicorn --preload``) has no writer thread: start afresh, as a
        writer of its own with its own name and counters."""
        self._pid = os.getpid()
        self.token = writer_token()
        self.counts = dict.fromkeys(self.counts, 0)
        self._new_queue()
        self._resend_lock = threading.Lock()
        self._thread = None
        self._seq = 0
        self._warned_drops = 0

    # ------------------------------------------------------------------ the thread

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"modeldeploy-{self.name}-writer", daemon=True
            )
            self._thread.start()

    def _new_queue(self) -> None:
        """The queue between callers and the thread: requests, and flush / close orders."""
        self._lock = threading.Lock()
        self._pending = deque()
        self._pending_rows = 0
        self._orders = deque()
        self._wake = threading.Event()
        self._wake_items = max(1, self.max_queue // 4)
        self._idle = False  # the writer waits for the next request, without a timeout

    def _control(self, order: tuple[str, Any]) -> None:
        with self._lock:
            self._orders.append(order)
        self._wake.set()

    def _run(self) -> None:
        items: list[Any] = []
        rows = 0
        nbytes = 0
        opened = 0.0
        while True:
            wait: float | None = POLL_S
            if items:
                wait = min(POLL_S, max(0.0, opened + self.segment_s - self.clock.monotonic()))
            else:
                with self._lock:
                    self._idle = not self._pending and not self._orders
                    if self._idle:
                        wait = None
            self._wake.wait(wait)
            self._wake.clear()
            with self._lock:
                taken = list(self._pending)
                self._pending.clear()
                self._pending_rows = 0
                orders = list(self._orders)
                self._orders.clear()
            for payload, n in taken:
                if not items:
                    opened = self.clock.monotonic()
                items.append(payload)
                rows += n
                nbytes += _size_of(payload)
                if rows >= self.segment_rows or nbytes >= self.segment_bytes:
                    self._write(items, rows)
                    items, rows, nbytes = [], 0, 0
            if items and (orders or self.clock.monotonic() - opened >= self.segment_s):
                self._write(items, rows)
                items, rows, nbytes = [], 0, 0
            self._warn_drops()
            for kind, payload in orders:
                if kind == "flush":
                    payload.set()
                elif kind == "close":
                    return

    def _segment_name(self, rows: int) -> str:
        self._seq += 1
        now = self.clock.now().astimezone(timezone.utc)
        stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
        return f"{now:%Y-%m-%d}/{stamp}-{self.token}-{self._seq:06d}-{rows}{SUFFIX}"

    def _write(self, items: list[Any], rows: int) -> None:
        """Write one segment; spill it when the location refuses, count it lost when the
        spill folder refuses too. Never raises."""
        pa = import_pyarrow("Prediction capture")
        table = self._build(pa, items, rows)
        if table is None:
            return
        name = self._segment_name(table.num_rows)
        staging = Path(tempfile.gettempdir())
        folder = self.location.folder
        if folder is not None:
            staging = folder  # same file system: the rename is atomic, no second copy
        staged: Path | None = None
        try:
            staging.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".segment-", suffix=".part", dir=staging)
            os.close(fd)
            staged = Path(tmp)
            pa.parquet.write_table(table, staged, compression="zstd")
            if folder is not None:
                final = folder / name
                final.parent.mkdir(parents=True, exist_ok=True)
                with open(staged, "rb+") as fh:
                    os.fsync(fh.fileno())
                os.replace(staged, final)
                fsync_dir(final.parent)
            else:
                self.location.put(name, staged)
        except Exception as exc:
            logger.warning(
                "%s: %s refused a segment of %d rows (%s: %s); spilling it to %s",
                self.name, self.location, rows, type(exc).__name__, exc, self.spill,
            )  # fmt: skip
            self._spill(table, name, rows)
            return
        finally:
            if staged is not None:
                staged.unlink(missing_ok=True)
        with self._lock:
            self.counts["written"] += rows
            self.counts["segments"] += 1
        if self.counts["spilled_segments"] or self._spilled_names():
            self._resend()

    def _build(self, pa: Any, items: list[Any], rows: int) -> Any:
        """The segment's table; an item that cannot be stored is left out and counted lost,
        never the others with it."""
        try:
            return self.to_table(items)
        except Exception:
            pass
        tables = []
        for item in items:
            try:
                tables.append(self.to_table([item]))
            except Exception:
                logger.warning("%s: could not store one request", self.name, exc_info=True)
        kept = sum(t.num_rows for t in tables)
        try:
            table = pa.concat_tables(tables, promote_options="permissive") if tables else None
        except Exception:
            logger.warning("%s: could not build a segment", self.name, exc_info=True)
            table, kept = None, 0
        with self._lock:
            self.counts["lost"] += rows - kept
        return table

    def _spill(self, table: Any, name: str, rows: int) -> None:
        pa = import_pyarrow("Prediction capture")
        final = self.spill / name.replace("/", "__")
        staged = final.with_name(f".{final.name}.part")
        try:
            self.spill.mkdir(parents=True, exist_ok=True)
            pa.parquet.write_table(table, staged, compression="zstd")
            os.replace(staged, final)
        except Exception as exc:
            staged.unlink(missing_ok=True)
            logger.warning(
                "%s: the spill folder %s refused it too (%s: %s); %d rows are lost",
                self.name, self.spill, type(exc).__name__, exc, rows,
            )  # fmt: skip
            with self._lock:
                self.counts["lost"] += rows
            return
        with self._lock:
            self.counts["spilled"] += rows
            self.counts["spilled_segments"] += 1

    def _spilled_names(self) -> list[Path]:
        try:
            return sorted(p for p in self.spill.glob(f"*{SUFFIX}") if not p.name.startswith("."))
        except OSError:
            return []

    def _resend(self) -> int:
        """Move spilled segments to the location; one sender at a time."""
        sent = 0
        with self._resend_lock:
            for path in self._spilled_names():
                rows = _rows_in_name(path.name)
                try:
                    self.location.put(path.name.replace("__", "/", 1), path)
                except Exception:
                    logger.info("%s: %s still refuses spilled segments", self.name, self.location)
                    break
                path.unlink(missing_ok=True)
                sent += 1
                with self._lock:
                    self.counts["resent"] += rows
                    self.counts["segments"] += 1
                    spilled = self.counts["spilled_segments"]
                    self.counts["spilled_segments"] = max(0, spilled - 1)
        return sent

    def _warn_drops(self) -> None:
        dropped = self.counts["dropped"]
        if dropped > self._warned_drops:
            now = self.clock.monotonic()
            if now - self._last_warning >= 10.0:
                logger.warning(
                    "%s: the writer fell behind; %d rows were dropped so far (queue full). "
                    "Raise max_queue, lower feature_rate, or write to a faster location.",
                    self.name, dropped,
                )  # fmt: skip
                self._last_warning = now
                self._warned_drops = dropped


def _size_of(item: Any) -> int:
    """Bytes an item holds, roughly (its arrays' ``nbytes``)."""
    total = 0
    if isinstance(item, tuple):
        for part in item:
            total += int(getattr(part, "nbytes", 64))
    return total


def _rows_in_name(name: str) -> int:
    """The row count a segment's name ends with (``...-<rows>.parquet``)."""
    stem = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    tail = stem.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def read_segments(location: Location, columns: list[str] | None = None) -> Iterator[Any]:
    """Each segment of ``location`` as a ``pyarrow.Table`` (in name order, oldest first)."""
    pa = import_pyarrow("Reading captured segments")
    for name in location.names():
        yield pa.parquet.read_table(location.source(name), columns=columns)


def utc_from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)
