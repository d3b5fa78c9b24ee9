"""The metadata store interface: models, versions, aliases and events as plain records."""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from modeldeploy.exceptions import OperationRefusedError

__all__ = [
    "AliasStack",
    "MetadataStore",
    "Record",
    "alias_in_use_error",
    "event_from_row",
    "event_record",
    "version_from_row",
]

Record = dict[str, Any]

_MOVES = ("promoted", "rolled_back", "alias_deleted")


class MetadataStore(ABC):
    """Models, versions, aliases and events. Every method is one atomic transaction.

    Records are plain dicts with JSON-friendly values. ``add_version`` allocates the next
    version number (never reused, even after a delete) and calls ``before_commit`` inside the
    transaction, which the registry uses to make sure the artifact is in place.

    A store never reads a clock: the registry stamps every write with its own clock and passes
    the time as ``at`` (an ISO 8601 UTC string; for ``add_version`` the record's
    ``created_at``), so every event of a model's history comes from one source of time.

    A store that can announce alias moves (PostgreSQL's LISTEN/NOTIFY) sets ``notifies`` and
    overrides [`wait_for_change`][modeldeploy.registry.stores.MetadataStore.wait_for_change];
    followers of an alias then swap as soon as it moves instead of at their next poll.
    """

    #: Whether :meth:`wait_for_change` returns as soon as an alias moves.
    notifies: ClassVar[bool] = False

    @abstractmethod
    def add_version(
        self, name: str, record: Record, before_commit: Callable[[], None] | None = None
    ) -> Record:
        """Store a new version of ``name`` (created on first use); return the ``registered``
        event, whose ``version`` is the new number."""

    @abstractmethod
    def get_version(self, name: str, version: int) -> Record:
        """One version; ModelNotFoundError / VersionNotFoundError when absent."""

    @abstractmethod
    def get_alias(self, name: str, alias: str) -> Record:
        """The version an alias points at; ModelNotFoundError / AliasNotFoundError."""

    @abstractmethod
    def latest_version(self, name: str) -> Record:
        """The highest existing version; ModelNotFoundError / VersionNotFoundError."""

    @abstractmethod
    def list_versions(self, name: str) -> list[Record]:
        """Every existing version of a model, oldest first."""

    @abstractmethod
    def list_models(self) -> list[Record]:
        """One record per model: ``name``, ``created_at``, ``latest``, ``versions``."""

    @abstractmethod
    def aliases(self, name: str) -> dict[str, int]:
        """Alias -> version for one model."""

    @abstractmethod
    def move_alias(
        self, name: str, alias: str, version: int | None, *, reason: str, kind: str, at: str
    ) -> Record:
        """Point ``alias`` at ``version`` (``kind="promoted"``), back to the version it held
        before (``kind="rolled_back"``, ``version=None``), or remove it (``kind=
        "alias_deleted"``). Returns the recorded event (``previous`` and ``version``)."""

    @abstractmethod
    def delete_version(
        self,
        name: str,
        version: int,
        *,
        reason: str,
        on_unreferenced: Callable[[str], None],
        at: str,
    ) -> Record:
        """Delete a version no alias points at; call ``on_unreferenced(sha256)`` inside the
        transaction when no other version shares its artifact. Returns the event."""

    @abstractmethod
    def update_version(
        self, name: str, version: int, *, metrics: Record | None, tags: Record | None, at: str
    ) -> Record:
        """Merge metrics and tags into a version's record. Returns the event."""

    @abstractmethod
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
        """Append an event to a model's history."""

    @abstractmethod
    def events(self, name: str) -> list[Record]:
        """A model's history, oldest first."""

    def alias_events(self, name: str, alias: str) -> list[Record]:
        """The latest move of ``alias`` (promoted, rolled back, deleted) and every later event
        naming the alias, oldest first; every event naming it when it never moved.

        The registry reads an alias's signature here. This default scans
        [`events`][modeldeploy.registry.stores.MetadataStore.events]; a store overrides it with one
        indexed query.
        """
        events = [e for e in self.events(name) if e["alias"] == alias]
        moves = [i for i, e in enumerate(events) if e["kind"] in _MOVES]
        return events[moves[-1] :] if moves else events

    @abstractmethod
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
        """Record (or replace) a named artifact stored next to a version."""

    @abstractmethod
    def get_attachment(self, name: str, version: int, key: str) -> Record | None:
        """The attachment's record (``sha256``, ``size``, ``created_at``), or None."""

    @abstractmethod
    def referenced_artifacts(self) -> set[str]:
        """The sha256 of every artifact some version or attachment uses."""

    def wait_for_change(self, name: str, timeout: float) -> bool:
        """Block until an alias of ``name`` may have moved; False when nothing did.

        Stores without notifications cannot tell, so the default sleeps ``timeout`` seconds and
        returns True: "look again" (polling).
        """
        time.sleep(timeout)
        return True

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def event_record(
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
    """An event as every metadata store records and returns it (the store adds its ``id``)."""
    return {
        "name": name,
        "time": at,
        "kind": kind,
        "version": version,
        "alias": alias,
        "previous": previous,
        "reason": reason,
        "details": details or {},
    }


class AliasStack:
    """The versions an alias pointed at, oldest first: what promote and rollback change.

    The same rule on every metadata store: a promotion pushes the new version (unless the alias
    already points at it); a rollback pops the current one and any deleted since, and lands on
    the version below. At most ``keep`` entries are stored.

    Examples
    --------
    >>> stack = AliasStack("churn", "production", [1, 2, 3])
    >>> stack.promote(4), stack.roll_back(existing={1, 2, 4}), stack.versions
    (4, 2, [1, 2])
    """

    def __init__(self, name: str, alias: str, versions: list[int], keep: int = 1000) -> None:
        self.name = name
        self.alias = alias
        self.versions = list(versions)
        self.keep = keep

    @property
    def current(self) -> int | None:
        """The version the alias points at, or None for a new alias."""
        return self.versions[-1] if self.versions else None

    def promote(self, version: int) -> int:
        """Point the alias at ``version``; return it."""
        if self.current != version:
            self.versions.append(version)
        return version

    def roll_back(self, existing: set[int]) -> int:
        """Go back to the latest earlier version that still exists; return it.

        Raises
        ------
        OperationRefusedError
            When no earlier version exists.
        """
        previous = self.current
        stack = self.versions[:-1]
        while stack and stack[-1] not in existing:
            stack.pop()
        if not stack:
            raise OperationRefusedError(
                f"Cannot roll back alias {self.alias!r} of model {self.name!r}: it has pointed "
                f"at no other existing version before version {previous}. Promote the version "
                f"you want instead: registry.promote({self.name!r}, VERSION, "
                f"alias={self.alias!r})."
            )
        self.versions = stack
        return stack[-1]

    def stored(self) -> list[int]:
        """The entries to store (the most recent ``keep``)."""
        return self.versions[-self.keep :]


#: Version fields every metadata store keeps as JSON text.
JSON_FIELDS = ("metrics", "params", "tags", "environment")


def version_from_row(row: Any) -> Record:
    """A version record from a database row (a mapping), its JSON fields decoded."""
    rec = dict(row)
    for key in JSON_FIELDS:
        rec[key] = json.loads(rec[key])
    return rec


def event_from_row(row: Any) -> Record:
    """An event record from a database row (a mapping), its details decoded."""
    rec = dict(row)
    rec["id"] = int(rec["id"])
    rec["details"] = json.loads(rec["details"])
    return rec


def alias_in_use_error(name: str, version: int, using: list[str]) -> OperationRefusedError:
    """Why a version an alias points at cannot be deleted, and what to do."""
    return OperationRefusedError(
        f"Version {version} of model {name!r} is in use by alias"
        f"{'es' if len(using) > 1 else ''} {', '.join(map(repr, using))}; deleting it would "
        f"leave the alias dangling. Move the alias first (registry.promote({name!r}, "
        f"OTHER_VERSION, alias={using[0]!r})) or delete it (registry.delete_alias({name!r}, "
        f"{using[0]!r}))."
    )
