"""The embedded metadata store: one SQLite file in WAL mode, safe from threads and processes."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from modeldeploy._config import DEFAULT_BUSY_TIMEOUT_S
from modeldeploy.exceptions import (
    AliasNotFoundError,
    CorruptStoreError,
    ModelNotFoundError,
    StoreUnavailableError,
    VersionNotFoundError,
)
from modeldeploy.registry._metadata import (
    _MOVES,
    AliasStack,
    MetadataStore,
    Record,
    alias_in_use_error,
    event_from_row,
    event_record,
    version_from_row,
)

__all__ = ["SQLiteMetadataStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    next_version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL REFERENCES models(name),
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    format TEXT NOT NULL,
    signature TEXT,
    metrics TEXT NOT NULL,
    params TEXT NOT NULL,
    tags TEXT NOT NULL,
    description TEXT NOT NULL,
    parent INTEGER,
    environment TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX IF NOT EXISTS versions_sha256 ON versions(sha256);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT NOT NULL REFERENCES models(name),
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    stack TEXT NOT NULL,
    PRIMARY KEY (name, alias)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    time TEXT NOT NULL,
    kind TEXT NOT NULL,
    version INTEGER,
    alias TEXT,
    previous INTEGER,
    reason TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_name ON events(name, id);
CREATE INDEX IF NOT EXISTS events_alias ON events(name, alias, id);
CREATE TABLE IF NOT EXISTS attachments (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    key TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (name, version, key)
);
"""


# SQLite's messages for a file that is not (or no longer) a readable database.
_CORRUPT = ("not a database", "malformed", "corrupt", "encrypted")

_F = TypeVar("_F", bound=Callable[..., Any])


def _translated(exc: sqlite3.Error, path: Path) -> Exception | None:
    """The modeldeploy error for an SQLite failure on ``path``, or None for a programming bug."""
    if not isinstance(exc, (sqlite3.OperationalError, sqlite3.DatabaseError)) or isinstance(
        exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)
    ):
        return None
    text = str(exc)
    where = str(path)
    if any(word in text.lower() for word in _CORRUPT):
        return CorruptStoreError(
            f"The registry database {where!r} is damaged or is not a registry database "
            f"(SQLite: {text}). Expected an SQLite file written by modeldeploy. Nothing was "
            "changed. Restore it from a backup (or try `sqlite3 registry.db .recover`); do not "
            "run registry.gc() until it opens again.",
            path=where,
        )
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        advice = (
            "another process held its write lock longer than the busy timeout. Try again, or "
            "give the store a longer busy_timeout_s"
        )
    elif "readonly" in lowered or "read-only" in lowered:
        advice = "the file or its folder is not writable by this process: check permissions"
    elif "full" in lowered:
        advice = "the disk is full: free space, then try again"
    else:
        advice = (
            "the file could not be read or written (disk, mount or permissions): check that "
            "the folder is reachable and writable, then try again"
        )
    return StoreUnavailableError(
        f"The registry database {where!r} could not be used (SQLite: {text}): {advice}. The "
        "operation did not happen.",
        server=where,
    )


def _sqlite_errors(method: _F) -> _F:
    """Raise SQLite's failures of ``method`` as modeldeploy errors naming the file."""

    @functools.wraps(method)
    def wrapper(self: SQLiteMetadataStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            error = _translated(exc, self.path)
            if error is None:
                raise
            raise error from exc

    return wrapper  # type: ignore[return-value]


def _has_artifacts(folder: Path) -> bool:
    """Whether ``folder`` (a local artifact store's root) holds any stored artifact."""
    store = folder / "sha256"
    return store.is_dir() and any(p.is_file() for p in store.rglob("*"))


class SQLiteMetadataStore(MetadataStore):
    """Metadata in one SQLite file: WAL journal, a busy timeout, ``BEGIN IMMEDIATE`` writes.

    Safe from many threads (one connection per thread) and many processes (SQLite's locks).
    SQLite's failures come out as
    [`StoreUnavailableError`][modeldeploy.exceptions.StoreUnavailableError] (locked beyond the busy
    timeout, disk I/O, read-only, full) or
    [`CorruptStoreError`][modeldeploy.exceptions.CorruptStoreError] (damaged, not a database),
    naming the file. A missing or zero-length database next to an ``artifacts`` folder that holds
    artifacts is refused rather than opened as an empty registry: it is a lost or truncated
    database, and an empty registry would let ``gc`` delete every artifact.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S
    ):
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._create_schema()

    @_sqlite_errors
    def _create_schema(self) -> None:
        with self._write() as conn:
            # Under the write lock, so a process creating the schema right now is not mistaken
            # for a lost database (registration opens the database before writing artifacts).
            if conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'models'"
            ).fetchone() is None and _has_artifacts(self.path.parent / "artifacts"):
                raise CorruptStoreError(
                    f"The registry database {str(self.path)!r} is missing or empty, but "
                    f"{str(self.path.parent / 'artifacts')!r} holds model artifacts: expected "
                    "the database that lists them. Opening it as an empty registry would hide "
                    "every version (and let gc delete the artifacts). Restore registry.db from a "
                    "backup; to start a new registry on purpose, move the artifacts folder away "
                    "first.",
                    path=str(self.path),
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    # -- connections

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.row_factory = sqlite3.Row
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
            except sqlite3.Error:
                conn.close()
                raise
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may already have rolled back (a failed COMMIT, disk I/O): never leave a
            # transaction open on this thread's connection, nor hide the first error.
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- helpers

    @staticmethod
    def _record(row: sqlite3.Row) -> Record:
        return version_from_row(row)

    def _require_model(self, conn: sqlite3.Connection, name: str) -> None:
        if conn.execute("SELECT 1 FROM models WHERE name = ?", (name,)).fetchone() is None:
            known = [r[0] for r in conn.execute("SELECT name FROM models")]
            raise ModelNotFoundError(name, known)

    def _version_row(self, conn: sqlite3.Connection, name: str, version: int) -> Record:
        row = conn.execute(
            "SELECT * FROM versions WHERE name = ? AND version = ?", (name, version)
        ).fetchone()
        if row is None:
            self._require_model(conn, name)
            known = [
                r[0] for r in conn.execute("SELECT version FROM versions WHERE name = ?", (name,))
            ]
            raise VersionNotFoundError(name, version, known)
        return self._record(row)

    def _event(
        self,
        conn: sqlite3.Connection,
        name: str,
        kind: str,
        *,
        at: str,
        version: int | None = None,
        alias: str | None = None,
        previous: int | None = None,
        reason: str = "",
        details: Record | None = None,
    ) -> Record:
        rec = event_record(
            name,
            kind,
            at=at,
            version=version,
            alias=alias,
            previous=previous,
            reason=reason,
            details=details,
        )
        cur = conn.execute(
            "INSERT INTO events (name, time, kind, version, alias, previous, reason, details) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (name, rec["time"], kind, version, alias, previous, reason, json.dumps(rec["details"])),
        )
        rec["id"] = cur.lastrowid
        return rec

    # -- versions

    def add_version(
        self, name: str, record: Record, before_commit: Callable[[], None] | None = None
    ) -> Record:
        with self._write() as conn:
            row = conn.execute("SELECT next_version FROM models WHERE name = ?", (name,)).fetchone()
            if row is None:
                version = 1
                conn.execute(
                    "INSERT INTO models (name, created_at, next_version) VALUES (?, ?, 2)",
                    (name, record["created_at"]),
                )
            else:
                version = int(row[0])
                conn.execute(
                    "UPDATE models SET next_version = ? WHERE name = ?", (version + 1, name)
                )
            self._insert_version(conn, name, version, record)
            event = self._event(
                conn,
                name,
                "registered",
                at=record["created_at"],
                version=version,
                reason=record.get("description", ""),
                details={
                    "sha256": record["sha256"],
                    "format": record["format"],
                    "size": record["size"],
                },
            )
            if before_commit is not None:
                before_commit()
        return event

    def _insert_version(
        self, conn: sqlite3.Connection, name: str, version: int, record: Record
    ) -> None:
        conn.execute(
            "INSERT INTO versions (name, version, created_at, sha256, size, format, signature, "
            "metrics, params, tags, description, parent, environment) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                name,
                version,
                record["created_at"],
                record["sha256"],
                record["size"],
                record["format"],
                record["signature"],
                json.dumps(record["metrics"]),
                json.dumps(record["params"]),
                json.dumps(record["tags"]),
                record["description"],
                record["parent"],
                json.dumps(record["environment"]),
            ),
        )

    def get_version(self, name: str, version: int) -> Record:
        return self._version_row(self._conn(), name, version)

    def get_alias(self, name: str, alias: str) -> Record:
        conn = self._conn()
        row = conn.execute(
            "SELECT v.* FROM aliases a JOIN versions v ON v.name = a.name AND v.version = a.version"
            " WHERE a.name = ? AND a.alias = ?",
            (name, alias),
        ).fetchone()
        if row is None:
            self._require_model(conn, name)
            raise AliasNotFoundError(name, alias, self.aliases(name))
        return self._record(row)

    def latest_version(self, name: str) -> Record:
        conn = self._conn()
        row = conn.execute(
            "SELECT * FROM versions WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
        ).fetchone()
        if row is None:
            self._require_model(conn, name)
            raise VersionNotFoundError(name, 0, [])
        return self._record(row)

    def list_versions(self, name: str) -> list[Record]:
        conn = self._conn()
        rows = conn.execute(
            "SELECT * FROM versions WHERE name = ? ORDER BY version", (name,)
        ).fetchall()
        if not rows:
            self._require_model(conn, name)
        return [self._record(r) for r in rows]

    def list_models(self) -> list[Record]:
        rows = (
            self._conn()
            .execute(
                "SELECT m.name, m.created_at, MAX(v.version) AS latest, "
                "COUNT(v.version) AS versions FROM models m "
                "LEFT JOIN versions v ON v.name = m.name GROUP BY m.name ORDER BY m.name"
            )
            .fetchall()
        )
        return [dict(r) for r in rows]

    def aliases(self, name: str) -> dict[str, int]:
        rows = (
            self._conn()
            .execute("SELECT alias, version FROM aliases WHERE name = ? ORDER BY alias", (name,))
            .fetchall()
        )
        return {r[0]: int(r[1]) for r in rows}

    def move_alias(
        self, name: str, alias: str, version: int | None, *, reason: str, kind: str, at: str
    ) -> Record:
        with self._write() as conn:
            self._require_model(conn, name)
            row = conn.execute(
                "SELECT version, stack FROM aliases WHERE name = ? AND alias = ?", (name, alias)
            ).fetchone()
            previous = int(row[0]) if row is not None else None
            stack = AliasStack(name, alias, json.loads(row[1]) if row is not None else [])
            if kind == "promoted":
                if version is None:
                    raise ValueError("promoting needs a version")
                self._version_row(conn, name, version)
                new: int | None = stack.promote(version)
            elif kind == "rolled_back":
                if row is None:
                    raise AliasNotFoundError(name, alias, self.aliases(name))
                existing = {
                    int(r[0])
                    for r in conn.execute("SELECT version FROM versions WHERE name = ?", (name,))
                }
                new = stack.roll_back(existing)
            else:  # alias_deleted
                if row is None:
                    raise AliasNotFoundError(name, alias, self.aliases(name))
                conn.execute("DELETE FROM aliases WHERE name = ? AND alias = ?", (name, alias))
                return self._event(
                    conn, name, kind, at=at, alias=alias, previous=previous, reason=reason
                )
            conn.execute(
                "INSERT INTO aliases (name, alias, version, stack) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version, "
                "stack = excluded.stack",
                (name, alias, new, json.dumps(stack.stored())),
            )
            return self._event(
                conn, name, kind, at=at, version=new, alias=alias, previous=previous, reason=reason
            )

    def delete_version(
        self,
        name: str,
        version: int,
        *,
        reason: str,
        on_unreferenced: Callable[[str], None],
        at: str,
    ) -> Record:
        with self._write() as conn:
            rec = self._version_row(conn, name, version)
            using = [
                r[0]
                for r in conn.execute(
                    "SELECT alias FROM aliases WHERE name = ? AND version = ?", (name, version)
                )
            ]
            if using:
                raise alias_in_use_error(name, version, using)
            conn.execute("DELETE FROM versions WHERE name = ? AND version = ?", (name, version))
            attached = [
                r[0]
                for r in conn.execute(
                    "SELECT sha256 FROM attachments WHERE name = ? AND version = ?",
                    (name, version),
                )
            ]
            conn.execute("DELETE FROM attachments WHERE name = ? AND version = ?", (name, version))
            event = self._event(
                conn,
                name,
                "deleted",
                at=at,
                version=version,
                reason=reason,
                details={"sha256": rec["sha256"]},
            )
            for sha in {rec["sha256"], *attached}:
                if not self._is_referenced(conn, sha):
                    on_unreferenced(sha)
        return event

    def update_version(
        self, name: str, version: int, *, metrics: Record | None, tags: Record | None, at: str
    ) -> Record:
        with self._write() as conn:
            rec = self._version_row(conn, name, version)
            rec["metrics"].update(metrics or {})
            rec["tags"].update(tags or {})
            conn.execute(
                "UPDATE versions SET metrics = ?, tags = ? WHERE name = ? AND version = ?",
                (json.dumps(rec["metrics"]), json.dumps(rec["tags"]), name, version),
            )
            return self._event(
                conn,
                name,
                "updated",
                at=at,
                version=version,
                details={"metrics": metrics or {}, "tags": tags or {}},
            )

    def add_event(
        self,
        name: str,
        kind: str,
        *,
        version: int | None = None,
        alias: str | None = None,
        previous: int | None = None,
        reason: str = "",
        details: Record | None = None,
        at: str,
    ) -> Record:
        with self._write() as conn:
            self._require_model(conn, name)
            return self._event(
                conn,
                name,
                kind,
                at=at,
                version=version,
                alias=alias,
                previous=previous,
                reason=reason,
                details=details,
            )

    def events(self, name: str) -> list[Record]:
        conn = self._conn()
        rows = conn.execute("SELECT * FROM events WHERE name = ? ORDER BY id", (name,)).fetchall()
        if not rows:
            self._require_model(conn, name)
        return [event_from_row(r) for r in rows]

    def alias_events(self, name: str, alias: str) -> list[Record]:
        # Newest first along the (name, alias, id) index, stopping at the latest move: usually
        # two rows (the move and its signature), however long the history.
        cursor = self._conn().execute(
            "SELECT * FROM events WHERE name = ? AND alias = ? ORDER BY id DESC", (name, alias)
        )
        out = []
        for r in cursor:
            rec = event_from_row(r)
            out.append(rec)
            if rec["kind"] in _MOVES:
                break
        cursor.close()
        out.reverse()
        return out

    @staticmethod
    def _is_referenced(conn: sqlite3.Connection, sha256: str) -> bool:
        return (
            conn.execute(
                "SELECT 1 FROM versions WHERE sha256 = ? UNION ALL "
                "SELECT 1 FROM attachments WHERE sha256 = ? LIMIT 1",
                (sha256, sha256),
            ).fetchone()
            is not None
        )

    def set_attachment(
        self,
        name: str,
        version: int,
        key: str,
        sha256: str,
        size: int,
        before_commit: Callable[[], None] | None = None,
        *,
        at: str,
    ) -> None:
        with self._write() as conn:
            self._version_row(conn, name, version)
            conn.execute(
                "INSERT INTO attachments (name, version, key, sha256, size, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name, version, key) DO UPDATE SET "
                "sha256 = excluded.sha256, size = excluded.size, created_at = excluded.created_at",
                (name, version, key, sha256, size, at),
            )
            if before_commit is not None:
                before_commit()

    def get_attachment(self, name: str, version: int, key: str) -> Record | None:
        row = (
            self._conn()
            .execute(
                "SELECT sha256, size, created_at FROM attachments "
                "WHERE name = ? AND version = ? AND key = ?",
                (name, version, key),
            )
            .fetchone()
        )
        return dict(row) if row is not None else None

    def referenced_artifacts(self) -> set[str]:
        rows = self._conn().execute(
            "SELECT sha256 FROM versions UNION SELECT sha256 FROM attachments"
        )
        return {r[0] for r in rows}


# One place turns SQLite's exceptions into modeldeploy's: every public method of the store.
for _name in (
    "add_version",
    "get_version",
    "get_alias",
    "latest_version",
    "list_versions",
    "list_models",
    "aliases",
    "move_alias",
    "delete_version",
    "update_version",
    "add_event",
    "events",
    "alias_events",
    "set_attachment",
    "get_attachment",
    "referenced_artifacts",
):
    setattr(SQLiteMetadataStore, _name, _sqlite_errors(getattr(SQLiteMetadataStore, _name)))
