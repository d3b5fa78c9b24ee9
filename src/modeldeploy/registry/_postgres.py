"""The fleet metadata store: PostgreSQL, shared by every host, with alias notifications."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from modeldeploy.exceptions import (
    AliasNotFoundError,
    MissingDependencyError,
    ModelNotFoundError,
    RegistryError,
    StoreUnavailableError,
    VersionNotFoundError,
)
from modeldeploy.registry._locations import check_schema, redact, split_schema
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

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresMetadataStore"]

logger = logging.getLogger("modeldeploy.registry")

_OWNER = "PostgresMetadataStore"
#: The layout this code writes; a later release migrates from the number it finds. Version 2
#: added the ``events_alias`` index (every statement of :func:`_tables` is idempotent, so an
#: older layout is brought up to date by running them again).
SCHEMA_VERSION = 2
_T = TypeVar("_T")

# Connections a forked child inherited from its parent. They are kept referenced and never
# closed here: closing (or collecting) one would end the parent's session on the server.
_INHERITED: list[object] = []


def _tables(s: str) -> list[str]:
    return [
        f'CREATE TABLE IF NOT EXISTS "{s}".models (name TEXT PRIMARY KEY, '
        "created_at TEXT NOT NULL, next_version BIGINT NOT NULL)",
        f'CREATE TABLE IF NOT EXISTS "{s}".versions (name TEXT NOT NULL REFERENCES "{s}".models'
        "(name), version BIGINT NOT NULL, created_at TEXT NOT NULL, sha256 TEXT NOT NULL, "
        "size BIGINT NOT NULL, format TEXT NOT NULL, signature TEXT, metrics TEXT NOT NULL, "
        "params TEXT NOT NULL, tags TEXT NOT NULL, description TEXT NOT NULL, parent BIGINT, "
        "environment TEXT NOT NULL, PRIMARY KEY (name, version))",
        f'CREATE INDEX IF NOT EXISTS versions_sha256 ON "{s}".versions (sha256)',
        f'CREATE TABLE IF NOT EXISTS "{s}".aliases (name TEXT NOT NULL REFERENCES "{s}".models'
        "(name), alias TEXT NOT NULL, version BIGINT NOT NULL, stack TEXT NOT NULL, "
        "PRIMARY KEY (name, alias))",
        f'CREATE TABLE IF NOT EXISTS "{s}".events (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL,'
        " time TEXT NOT NULL, kind TEXT NOT NULL, version BIGINT, alias TEXT, previous BIGINT, "
        "reason TEXT NOT NULL, details TEXT NOT NULL)",
        f'CREATE INDEX IF NOT EXISTS events_name ON "{s}".events (name, id)',
        f'CREATE INDEX IF NOT EXISTS events_alias ON "{s}".events (name, alias, id)',
        f'CREATE TABLE IF NOT EXISTS "{s}".attachments (name TEXT NOT NULL, version BIGINT NOT '
        "NULL, key TEXT NOT NULL, sha256 TEXT NOT NULL, size BIGINT NOT NULL, created_at TEXT "
        "NOT NULL, PRIMARY KEY (name, version, key))",
        f'CREATE INDEX IF NOT EXISTS attachments_sha256 ON "{s}".attachments (sha256)',
    ]


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise MissingDependencyError("psycopg", "postgres", "A registry on PostgreSQL") from None
    return psycopg


class _Commit:
    """Marks when a transaction has sent its COMMIT: a failure after that is not retried."""

    sent = False


class PostgresMetadataStore(MetadataStore):
    """Metadata in a PostgreSQL database, for registries shared by many hosts.

    Every write is one transaction that first locks the model's row (``SELECT ... FOR
    UPDATE``), so concurrent promotions, rollbacks and registrations of one model queue up
    instead of losing each other's changes. Version numbers come from a counter in that row
    (never ``MAX(version) + 1``). The tables are created on first use under an advisory lock,
    with a schema version kept for later migrations. Alias moves are announced with ``NOTIFY``,
    so replicas following an alias learn of a promotion at once
    ([`wait_for_change`][modeldeploy.registry.stores.PostgresMetadataStore.wait_for_change]).

    Each thread has its own connection, opened again after a fork. A lost connection (a server
    restart) is retried ``retries`` times with growing pauses, then raises
    [`StoreUnavailableError`][modeldeploy.exceptions.StoreUnavailableError]; a transaction cut off
    before its commit leaves nothing behind.

    Parameters
    ----------
    url
        A libpq connection URL or DSN (``postgresql://md@db.internal:5432/models``). Anything
        libpq reads from the environment (``PGPASSWORD``, ``PGSSLMODE``, ``~/.pgpass``) applies,
        so passwords need not appear in code. A ``?schema=NAME`` parameter is read here.
    schema
        The PostgreSQL schema that holds the registry's tables (default ``modeldeploy``, or the
        URL's ``schema=``). Several registries can share one database under different schemas.
    connect_timeout_s
        How long one connection attempt may take.
    retries
        How many times an operation cut off by a lost connection is tried again.
    retry_wait_s
        The first pause between attempts; it doubles at each attempt.

    Examples
    --------
    >>> from modeldeploy.registry.stores import PostgresMetadataStore
    >>> store = PostgresMetadataStore("postgresql://md:secret@db.internal/models")
    >>> store
    PostgresMetadataStore('postgresql://md@db.internal/models', schema='modeldeploy')
    """

    #: Alias moves wake :meth:`wait_for_change` through LISTEN/NOTIFY.
    notifies = True

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        connect_timeout_s: float = 5.0,
        retries: int = 4,
        retry_wait_s: float = 0.25,
    ) -> None:
        libpq_url, url_schema = split_schema(url)
        self.url = redact(libpq_url)
        self.schema = check_schema(schema or url_schema or "modeldeploy", _OWNER)
        self.connect_timeout_s = connect_timeout_s
        self.retries = retries
        self.retry_wait_s = retry_wait_s
        self._dsn = libpq_url
        self._local = threading.local()
        self._ready_pid: int | None = None
        self._ready_lock = threading.RLock()
        self._channel = f"modeldeploy_{self.schema}"
        # Every connection this process opened, so that dropping the store closes them all
        # (threads keep theirs in thread-local slots the store cannot otherwise reach).
        self._opened: list[psycopg.Connection[Any]] = []
        self._opened_pid = os.getpid()

    def __repr__(self) -> str:
        return f"{_OWNER}({self.url!r}, schema={self.schema!r})"

    # ------------------------------------------------------------------ connections

    def _server(self) -> str:
        return self.url

    def _connect(self) -> psycopg.Connection[Any]:
        pg = _import_psycopg()
        from psycopg.rows import dict_row

        conn: psycopg.Connection[Any] = pg.connect(
            self._dsn,
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=max(1, round(self.connect_timeout_s)),
            application_name="modeldeploy",
        )
        with self._ready_lock:
            if self._opened_pid != os.getpid():
                _INHERITED.extend(self._opened)
                self._opened, self._opened_pid = [], os.getpid()
            self._opened = [c for c in self._opened if not c.closed]
            self._opened.append(conn)
        return conn

    def __del__(self) -> None:
        if getattr(self, "_opened_pid", None) != os.getpid():
            return
        for conn in getattr(self, "_opened", ()):
            # At interpreter shutdown closing may fail; the server ends the session anyway.
            with contextlib.suppress(Exception):
                conn.close()

    def _conn(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if getattr(self._local, "pid", None) != os.getpid():
            if conn is not None:
                _INHERITED.append(conn)
            for attr in ("conn", "listener"):
                old = getattr(self._local, attr, None)
                if old is not None and old is not conn:
                    _INHERITED.append(old)
                setattr(self._local, attr, None)
            conn = None
            self._local.pid = os.getpid()
        if conn is None or conn.closed:
            conn = self._connect()
            self._local.conn = conn
        if self._ready_pid != os.getpid():
            with self._ready_lock:
                if self._ready_pid != os.getpid():
                    self._create_schema(conn)
                    self._ready_pid = os.getpid()
        return conn

    def _drop(self, attr: str) -> None:
        conn = getattr(self._local, attr, None)
        setattr(self._local, attr, None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            try:
                conn.close()
            except Exception:  # a broken connection may fail to close; it is gone either way
                logger.debug("closing a broken connection failed", exc_info=True)

    def close(self) -> None:
        """Close this thread's connections."""
        self._drop("conn")
        self._drop("listener")

    def _unavailable(self, exc: BaseException, *, committed_unknown: bool = False) -> Exception:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if committed_unknown:
            return StoreUnavailableError(
                f"The connection to the PostgreSQL server at {self._server()} was lost while a "
                f"change was being committed ({first}); it may or may not have been recorded. "
                "Check with registry.history(NAME) before trying again.",
                server=self._server(),
            )
        return StoreUnavailableError(
            f"Could not reach the PostgreSQL server at {self._server()} after "
            f"{self.retries + 1} attempts ({first}). Nothing was changed. Check that the server "
            "is running and reachable, then try again.",
            server=self._server(),
        )

    def _retrying(self, op: Callable[[psycopg.Connection[Any], _Commit], _T]) -> _T:
        """Run ``op`` on this thread's connection, again on a fresh one if the link broke."""
        pg = _import_psycopg()
        wait = self.retry_wait_s
        for attempt in range(self.retries + 1):
            commit = _Commit()
            try:
                conn = self._conn()
                return op(conn, commit)
            except (pg.OperationalError, pg.InterfaceError) as exc:
                conn_now: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
                broken = conn_now is None or conn_now.broken or conn_now.closed
                rolled_back = isinstance(exc, pg.errors.TransactionRollback)
                if not (broken or rolled_back):
                    raise
                if broken:
                    self._drop("conn")
                if commit.sent:
                    raise self._unavailable(exc, committed_unknown=True) from exc
                if attempt == self.retries:
                    raise self._unavailable(exc) from exc
                logger.warning(
                    "PostgreSQL server at %s: %s; retrying in %.2f s",
                    self._server(),
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc),
                    wait,
                )
                time.sleep(wait)
                wait *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _transaction(
        self, conn: psycopg.Connection[Any], commit: _Commit
    ) -> Iterator[psycopg.Connection[Any]]:
        conn.execute("BEGIN")
        try:
            yield conn
        except BaseException:
            if not conn.broken and not conn.closed:
                conn.execute("ROLLBACK")
            raise
        commit.sent = True
        conn.execute("COMMIT")

    def _write(self, op: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        def run(conn: psycopg.Connection[Any], commit: _Commit) -> _T:
            with self._transaction(conn, commit):
                return op(conn)

        return self._retrying(run)

    def _read(self, op: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        return self._retrying(lambda conn, _: op(conn))

    def _create_schema(self, conn: psycopg.Connection[Any]) -> None:
        s = self.schema
        # Usually the tables are there and up to date: one plain read says so, without the
        # transaction, the advisory lock and the DDL (about 10 ms of a new process's first call).
        pg = _import_psycopg()
        try:
            row = conn.execute(
                f'SELECT MAX(version) AS version FROM "{s}".schema_version'
            ).fetchone()
        except (pg.errors.UndefinedTable, pg.errors.InvalidSchemaName):
            row = None  # a new registry: create it below (autocommit, so nothing to roll back)
        if row is not None and row["version"] == SCHEMA_VERSION:
            return
        with self._transaction(conn, _Commit()):
            # Many processes starting at once would race on CREATE ... IF NOT EXISTS (it is not
            # atomic against itself); the advisory lock makes them take turns.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"modeldeploy:{s}",))
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{s}"')
            conn.execute(f'CREATE TABLE IF NOT EXISTS "{s}".schema_version (version INTEGER)')
            row = conn.execute(f'SELECT version FROM "{s}".schema_version').fetchone()
            found = int(row["version"]) if row is not None else 0
            if found > SCHEMA_VERSION:
                raise RegistryError(
                    f"The registry in schema {s!r} at {self._server()} has layout version "
                    f"{found}, made by a newer modeldeploy; this one knows version "
                    f"{SCHEMA_VERSION}. Upgrade modeldeploy on this host."
                )
            if found < SCHEMA_VERSION:
                for statement in _tables(s):
                    conn.execute(statement)
                conn.execute(f'DELETE FROM "{s}".schema_version')
                conn.execute(
                    f'INSERT INTO "{s}".schema_version (version) VALUES (%s)', (SCHEMA_VERSION,)
                )

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _record(row: dict[str, Any]) -> Record:
        return version_from_row(row)

    def _known_models(self, conn: psycopg.Connection[Any]) -> list[str]:
        return [r["name"] for r in conn.execute(f'SELECT name FROM "{self.schema}".models')]

    def _require_model(self, conn: psycopg.Connection[Any], name: str) -> None:
        row = conn.execute(
            f'SELECT 1 AS one FROM "{self.schema}".models WHERE name = %s', (name,)
        ).fetchone()
        if row is None:
            raise ModelNotFoundError(name, self._known_models(conn))

    def _lock_model(self, conn: psycopg.Connection[Any], name: str) -> None:
        """Take the model's lock for the rest of the transaction (every write does this)."""
        row = conn.execute(
            f'SELECT 1 AS one FROM "{self.schema}".models WHERE name = %s FOR UPDATE', (name,)
        ).fetchone()
        if row is None:
            raise ModelNotFoundError(name, self._known_models(conn))

    def _version_row(self, conn: psycopg.Connection[Any], name: str, version: int) -> Record:
        row = conn.execute(
            f'SELECT * FROM "{self.schema}".versions WHERE name = %s AND version = %s',
            (name, version),
        ).fetchone()
        if row is None:
            self._require_model(conn, name)
            known = [
                int(r["version"])
                for r in conn.execute(
                    f'SELECT version FROM "{self.schema}".versions WHERE name = %s', (name,)
                )
            ]
            raise VersionNotFoundError(name, version, known)
        return self._record(row)

    def _aliases(self, conn: psycopg.Connection[Any], name: str) -> dict[str, int]:
        rows = conn.execute(
            f'SELECT alias, version FROM "{self.schema}".aliases WHERE name = %s ORDER BY alias',
            (name,),
        )
        return {r["alias"]: int(r["version"]) for r in rows}

    def _event(
        self,
        conn: psycopg.Connection[Any],
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
        row = conn.execute(
            f'INSERT INTO "{self.schema}".events (name, time, kind, version, alias, previous, '
            "reason, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (name, at, kind, version, alias, previous, reason, json.dumps(rec["details"])),
        ).fetchone()
        assert row is not None
        rec["id"] = int(row["id"])
        return rec

    def _is_referenced(self, conn: psycopg.Connection[Any], sha256: str) -> bool:
        row = conn.execute(
            f'SELECT 1 AS one FROM "{self.schema}".versions WHERE sha256 = %s UNION ALL '
            f'SELECT 1 FROM "{self.schema}".attachments WHERE sha256 = %s LIMIT 1',
            (sha256, sha256),
        ).fetchone()
        return row is not None

    # ------------------------------------------------------------------ versions

    def add_version(
        self, name: str, record: Record, before_commit: Callable[[], None] | None = None
    ) -> Record:
        s = self.schema

        def op(conn: psycopg.Connection[Any]) -> Record:
            conn.execute(
                f'INSERT INTO "{s}".models (name, created_at, next_version) VALUES (%s, %s, 1) '
                "ON CONFLICT (name) DO NOTHING",
                (name, record["created_at"]),
            )
            # The row lock this UPDATE takes is the model's lock: registrations queue here and
            # each gets the next number, with no gap and no retry.
            row = conn.execute(
                f'UPDATE "{s}".models SET next_version = next_version + 1 WHERE name = %s '
                "RETURNING next_version - 1 AS version",
                (name,),
            ).fetchone()
            assert row is not None
            version = int(row["version"])
            conn.execute(
                f'INSERT INTO "{s}".versions (name, version, created_at, sha256, size, format, '
                "signature, metrics, params, tags, description, parent, environment) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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

        return self._write(op)

    def get_version(self, name: str, version: int) -> Record:
        return self._read(lambda conn: self._version_row(conn, name, version))

    def get_alias(self, name: str, alias: str) -> Record:
        s = self.schema

        def op(conn: psycopg.Connection[Any]) -> Record:
            row = conn.execute(
                f'SELECT v.* FROM "{s}".aliases a JOIN "{s}".versions v ON v.name = a.name '
                "AND v.version = a.version WHERE a.name = %s AND a.alias = %s",
                (name, alias),
            ).fetchone()
            if row is None:
                self._require_model(conn, name)
                raise AliasNotFoundError(name, alias, self._aliases(conn, name))
            return self._record(row)

        return self._read(op)

    def latest_version(self, name: str) -> Record:
        def op(conn: psycopg.Connection[Any]) -> Record:
            row = conn.execute(
                f'SELECT * FROM "{self.schema}".versions WHERE name = %s '
                "ORDER BY version DESC LIMIT 1",
                (name,),
            ).fetchone()
            if row is None:
                self._require_model(conn, name)
                raise VersionNotFoundError(name, 0, [])
            return self._record(row)

        return self._read(op)

    def list_versions(self, name: str) -> list[Record]:
        def op(conn: psycopg.Connection[Any]) -> list[Record]:
            rows = conn.execute(
                f'SELECT * FROM "{self.schema}".versions WHERE name = %s ORDER BY version',
                (name,),
            ).fetchall()
            if not rows:
                self._require_model(conn, name)
            return [self._record(r) for r in rows]

        return self._read(op)

    def list_models(self) -> list[Record]:
        s = self.schema

        def op(conn: psycopg.Connection[Any]) -> list[Record]:
            rows = conn.execute(
                f"SELECT m.name, m.created_at, MAX(v.version) AS latest, "
                f'COUNT(v.version) AS versions FROM "{s}".models m '
                f'LEFT JOIN "{s}".versions v ON v.name = m.name GROUP BY m.name ORDER BY m.name'
            ).fetchall()
            return [
                {
                    **r,
                    "latest": None if r["latest"] is None else int(r["latest"]),
                    "versions": int(r["versions"]),
                }
                for r in rows
            ]

        return self._read(op)

    def aliases(self, name: str) -> dict[str, int]:
        return self._read(lambda conn: self._aliases(conn, name))

    def move_alias(
        self, name: str, alias: str, version: int | None, *, reason: str, kind: str, at: str
    ) -> Record:
        s = self.schema

        def op(conn: psycopg.Connection[Any]) -> Record:
            self._lock_model(conn, name)
            row = conn.execute(
                f'SELECT version, stack FROM "{s}".aliases WHERE name = %s AND alias = %s',
                (name, alias),
            ).fetchone()
            previous = int(row["version"]) if row is not None else None
            stack = AliasStack(name, alias, json.loads(row["stack"]) if row is not None else [])
            if kind == "promoted":
                if version is None:
                    raise ValueError("promoting needs a version")
                self._version_row(conn, name, version)
                new: int | None = stack.promote(version)
            elif kind == "rolled_back":
                if row is None:
                    raise AliasNotFoundError(name, alias, self._aliases(conn, name))
                existing = {
                    int(r["version"])
                    for r in conn.execute(
                        f'SELECT version FROM "{s}".versions WHERE name = %s', (name,)
                    )
                }
                new = stack.roll_back(existing)
            else:  # alias_deleted
                if row is None:
                    raise AliasNotFoundError(name, alias, self._aliases(conn, name))
                conn.execute(
                    f'DELETE FROM "{s}".aliases WHERE name = %s AND alias = %s', (name, alias)
                )
                self._notify(conn, name)
                return self._event(
                    conn, name, kind, at=at, alias=alias, previous=previous, reason=reason
                )
            conn.execute(
                f'INSERT INTO "{s}".aliases (name, alias, version, stack) VALUES (%s, %s, %s, %s)'
                " ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version, "
                "stack = excluded.stack",
                (name, alias, new, json.dumps(stack.stored())),
            )
            self._notify(conn, name)
            return self._event(
                conn, name, kind, at=at, version=new, alias=alias, previous=previous, reason=reason
            )

        return self._write(op)

    def _notify(self, conn: psycopg.Connection[Any], name: str) -> None:
        # Delivered to listeners when (and only if) the transaction commits.
        conn.execute("SELECT pg_notify(%s, %s)", (self._channel, name))

    def delete_version(
        self,
        name: str,
        version: int,
        *,
        reason: str,
        on_unreferenced: Callable[[str], None],
        at: str,
    ) -> Record:
        s = self.schema

        def op(conn: psycopg.Connection[Any]) -> Record:
            self._lock_model(conn, name)
            rec = self._version_row(conn, name, version)
            using = [
                r["alias"]
                for r in conn.execute(
                    f'SELECT alias FROM "{s}".aliases WHERE name = %s AND version = %s',
                    (name, version),
                )
            ]
            if using:
                raise alias_in_use_error(name, version, using)
            conn.execute(
                f'DELETE FROM "{s}".versions WHERE name = %s AND version = %s', (name, version)
            )
            attached = [
                r["sha256"]
                for r in conn.execute(
                    f'DELETE FROM "{s}".attachments WHERE name = %s AND version = %s '
                    "RETURNING sha256",
                    (name, version),
                )
            ]
            event = self._event(
                conn,
                name,
                "deleted",
                at=at,
                version=version,
                reason=reason,
                details={"sha256": rec["sha256"]},
            )
            for sha in sorted({rec["sha256"], *attached}):
                if not self._is_referenced(conn, sha):
                    on_unreferenced(sha)
            return event

        return self._write(op)

    def update_version(
        self, name: str, version: int, *, metrics: Record | None, tags: Record | None, at: str
    ) -> Record:
        def op(conn: psycopg.Connection[Any]) -> Record:
            self._lock_model(conn, name)
            rec = self._version_row(conn, name, version)
            rec["metrics"].update(metrics or {})
            rec["tags"].update(tags or {})
            conn.execute(
                f'UPDATE "{self.schema}".versions SET metrics = %s, tags = %s '
                "WHERE name = %s AND version = %s",
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

        return self._write(op)

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
        def op(conn: psycopg.Connection[Any]) -> Record:
            self._lock_model(conn, name)
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

        return self._write(op)

    def events(self, name: str) -> list[Record]:
        def op(conn: psycopg.Connection[Any]) -> list[Record]:
            rows = conn.execute(
                f'SELECT * FROM "{self.schema}".events WHERE name = %s ORDER BY id', (name,)
            ).fetchall()
            if not rows:
                self._require_model(conn, name)
            return [event_from_row(r) for r in rows]

        return self._read(op)

    def alias_events(self, name: str, alias: str) -> list[Record]:
        # One query along the (name, alias, id) index: the latest move (found by walking the
        # index backwards, usually one step) and the events after it; usually two rows (the
        # move and its signature), however long the history.
        s = self.schema
        moves = ", ".join(f"'{kind}'" for kind in _MOVES)

        def op(conn: psycopg.Connection[Any]) -> list[Record]:
            rows = conn.execute(
                f'SELECT * FROM "{s}".events WHERE name = %s AND alias = %s AND id >= '
                f'COALESCE((SELECT id FROM "{s}".events WHERE name = %s AND alias = %s AND '
                f"kind IN ({moves}) ORDER BY id DESC LIMIT 1), 0) ORDER BY id",
                (name, alias, name, alias),
            ).fetchall()
            return [event_from_row(r) for r in rows]

        return self._read(op)

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
        def op(conn: psycopg.Connection[Any]) -> None:
            self._lock_model(conn, name)
            self._version_row(conn, name, version)
            conn.execute(
                f'INSERT INTO "{self.schema}".attachments (name, version, key, sha256, size, '
                "created_at) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name, version, key) "
                "DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, "
                "created_at = excluded.created_at",
                (name, version, key, sha256, size, at),
            )
            if before_commit is not None:
                before_commit()

        self._write(op)

    def get_attachment(self, name: str, version: int, key: str) -> Record | None:
        def op(conn: psycopg.Connection[Any]) -> Record | None:
            row = conn.execute(
                f'SELECT sha256, size, created_at FROM "{self.schema}".attachments '
                "WHERE name = %s AND version = %s AND key = %s",
                (name, version, key),
            ).fetchone()
            return None if row is None else {**row, "size": int(row["size"])}

        return self._read(op)

    def referenced_artifacts(self) -> set[str]:
        s = self.schema
        return self._read(
            lambda conn: {
                r["sha256"]
                for r in conn.execute(
                    f'SELECT sha256 FROM "{s}".versions UNION SELECT sha256 FROM "{s}".attachments'
                )
            }
        )

    # ------------------------------------------------------------------ notifications

    def wait_for_change(self, name: str, timeout: float) -> bool:
        """Wait until an alias of ``name`` moves (True) or ``timeout`` seconds pass (False).

        The first call of a thread opens a listening connection and returns True at once, so
        the caller checks for a move it could have missed before listening. After a lost
        connection it also returns True (after the timeout), since a move may have been missed.
        """
        pg = _import_psycopg()
        listener: psycopg.Connection[Any] | None = getattr(self._local, "listener", None)
        if getattr(self._local, "pid", None) != os.getpid():
            self._conn()  # forgets the parent's connections
            listener = None
        if listener is None or listener.closed:
            try:
                self._conn()  # the tables (and the schema) exist before anyone listens
                listener = self._connect()
                listener.execute(f'LISTEN "{self._channel}"')
            except (pg.OperationalError, pg.InterfaceError, StoreUnavailableError):
                logger.debug("listening on %s failed; polling", self._server(), exc_info=True)
                time.sleep(timeout)
                return True
            self._local.listener = listener
            return True
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                for note in listener.notifies(timeout=left, stop_after=1):
                    if note.payload == name:
                        return True
            return False
        except (pg.OperationalError, pg.InterfaceError):
            logger.debug("the listening connection to %s broke", self._server(), exc_info=True)
            self._drop("listener")
            time.sleep(max(0.0, deadline - time.monotonic()))
            return True
