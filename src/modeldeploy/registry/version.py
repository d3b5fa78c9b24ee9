"""Immutable records: one registered model version, and one event of a model's history."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.registry._signing import SEAL_TAG
from modeldeploy.registry.signature import Signature

__all__ = ["Event", "ModelVersion"]


class VersionSource(Protocol):
    """What a [`ModelVersion`][modeldeploy.ModelVersion] asks of the registry it was read from
    ([`ModelRegistry`][modeldeploy.ModelRegistry] is one)."""

    def _load_artifact(self, name: str, version: int, sha256: str, format: str) -> Any: ...

    def attach(self, name: str, version: int, key: str, data: bytes) -> str: ...

    def attachment(self, name: str, version: int, key: str) -> bytes | None: ...

    def record_event(
        self,
        name: str,
        kind: str,
        *,
        version: int | None = None,
        alias: str | None = None,
        reason: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> Event: ...


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model, as it was recorded.

    Get one from [`ModelRegistry.register`][modeldeploy.ModelRegistry.register] or
    [`ModelRegistry.get`][modeldeploy.ModelRegistry.get]; hand it to a deployer or a monitor.
    [`load`][modeldeploy.ModelVersion.load] returns the model itself, verified and cached.

    Attributes
    ----------
    name, version
        The model's name and the version number (from 1, never reused).
    created_at
        Registration time (UTC).
    sha256, size, format
        The artifact's checksum, its size in bytes and the serialization format.
    signature
        The input schema and reference profile, when a sample or signature was given.
    metrics, params, tags, description
        What the user recorded about the version.
    parent
        The version this one was derived from (lineage), if any.
    environment
        Python, numpy, scikit-learn and joblib versions the model was saved with.
    aliases
        The aliases pointing at this version when the record was read.
    """

    name: str
    version: int
    created_at: datetime
    sha256: str
    size: int
    format: str
    signature: Signature | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    parent: int | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    _registry: VersionSource | None = field(default=None, repr=False, compare=False)

    @property
    def ref(self) -> str:
        """``"name:version"``, how logs, stats and the command line name this version."""
        return f"{self.name}:{self.version}"

    @property
    def registry(self) -> VersionSource | None:
        """The registry this record was read from (None for a detached record)."""
        return self._registry

    def _bound(self, action: str) -> VersionSource:
        if self._registry is None:
            raise RuntimeError(
                f"{self.ref} is a detached record (not read from a registry); {action} through "
                "the registry instead."
            )
        return self._registry

    def load(self) -> Any:
        """The model object, sha256-verified before deserializing, and cached in-process."""
        registry = self._bound("load it with registry.load(name, version=...)")
        return registry._load_artifact(self.name, self.version, self.sha256, self.format)

    def attachment(self, key: str) -> bytes | None:
        """The bytes attached to this version under ``key`` (sha256-verified), or None; see
        [`ModelRegistry.attachment`][modeldeploy.ModelRegistry.attachment]."""
        return self._bound("read attachments").attachment(self.name, self.version, key)

    def attach(self, key: str, data: bytes) -> str:
        """Store ``data`` next to this version under ``key``; see
        [`ModelRegistry.attach`][modeldeploy.ModelRegistry.attach]."""
        return self._bound("attach data").attach(self.name, self.version, key, data)

    def record_event(
        self, kind: str, *, reason: str = "", details: Mapping[str, Any] | None = None
    ) -> Event:
        """Add an event about this version to its model's history; see
        [`ModelRegistry.record_event`][modeldeploy.ModelRegistry.record_event]."""
        return self._bound("record events").record_event(
            self.name, kind, version=self.version, reason=reason, details=details
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of the record."""
        return {
            "name": self.name,
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "sha256": self.sha256,
            "size": self.size,
            "format": self.format,
            "signature": self.signature.to_dict() if self.signature is not None else None,
            "metrics": dict(self.metrics),
            "params": dict(self.params),
            "tags": dict(self.tags),
            "description": self.description,
            "parent": self.parent,
            "environment": dict(self.environment),
            "aliases": list(self.aliases),
        }

    def __repr__(self) -> str:
        aliases = f" @{',@'.join(self.aliases)}" if self.aliases else ""
        metrics = ", ".join(f"{k}={_fmt(v)}" for k, v in list(self.metrics.items())[:4])
        return (
            f"<ModelVersion {self.ref}{aliases} {self.format} {self.sha256[:12]} "
            f"{self.created_at:%Y-%m-%d %H:%M:%S}Z{' ' + metrics if metrics else ''}>"
        )

    def _repr_html_(self) -> str:
        rows = [
            ("version", self.ref),
            ("aliases", ", ".join(self.aliases) or "-"),
            ("created", f"{self.created_at:%Y-%m-%d %H:%M:%S} UTC"),
            ("format", f"{self.format}, {self.size:,} bytes"),
            ("sha256", self.sha256),
            ("parent", str(self.parent) if self.parent is not None else "-"),
            ("description", self.description or "-"),
            ("metrics", _kv(self.metrics)),
            ("tags", _kv(self.tags)),
            ("params", _kv(self.params, limit=12)),
            ("signature", repr(self.signature) if self.signature is not None else "-"),
            ("environment", _kv(self.environment)),
        ]
        body = "".join(
            f"<tr><th style='text-align:left'>{k}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        return f"<table>{body}</table>"


@dataclass(frozen=True)
class Event:
    """One entry of a model's history: a registration, an alias move, a delete, a custom event.

    Attributes
    ----------
    id
        Increasing number across the whole registry (orders events between models too).
    time
        When it happened (UTC).
    kind
        ``"registered"``, ``"promoted"``, ``"rolled_back"``, ``"alias_deleted"``,
        ``"deleted"``, ``"updated"``, or a kind recorded with ``record_event``.
    version, alias, previous
        The version concerned, the alias moved, and the version the alias held before.
    reason
        Why, in the user's words.
    details
        Anything else, JSON-friendly.
    """

    id: int
    name: str
    time: datetime
    kind: str
    version: int | None = None
    alias: str | None = None
    previous: int | None = None
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        parts = [f"{self.time:%Y-%m-%d %H:%M:%S}Z", self.kind, f"{self.name}"]
        if self.alias is not None:
            moved = f"{self.previous}->{self.version}" if self.previous else f"{self.version}"
            parts.append(f"@{self.alias}={moved}")
        elif self.version is not None:
            parts.append(f"v{self.version}")
        if self.reason:
            parts.append(repr(self.reason))
        return f"<Event {' '.join(parts)}>"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of the event."""
        return {
            "id": self.id,
            "name": self.name,
            "time": self.time.isoformat(),
            "kind": self.kind,
            "version": self.version,
            "alias": self.alias,
            "previous": self.previous,
            "reason": self.reason,
            "details": dict(self.details),
        }


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _kv(mapping: Mapping[str, Any], limit: int = 20) -> str:
    if not mapping:
        return "-"
    items = list(mapping.items())
    text = ", ".join(f"{k}={_fmt(v)}" for k, v in items[:limit])
    return text + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _json_default(obj: Any) -> Any:
    """Make numpy scalars, arrays and other simple objects JSON-friendly."""
    if getattr(obj, "ndim", 0) and callable(getattr(obj, "tolist", None)):
        return obj.tolist()  # an array (of any size) becomes a JSON list
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return obj.tolist()
    return repr(obj)


def to_json_friendly(mapping: Mapping[str, Any] | None) -> dict[str, Any]:
    """Round-trip a user mapping through JSON so it stores exactly as it will read back."""
    return dict(json.loads(json.dumps(dict(mapping or {}), default=_json_default)))


def to_metrics(mapping: Mapping[str, Any] | None, owner: str) -> dict[str, Any]:
    """Metrics as stored: JSON-friendly, one value per metric (a 1-element array is its value).

    Raises
    ------
    InvalidParameterError
        Naming the metric whose value is an array of several (or no) values.
    """
    metrics = to_json_friendly(mapping)
    for key, value in metrics.items():
        if isinstance(value, list):
            if len(value) == 1 and not isinstance(value[0], (list, dict)):
                metrics[key] = value[0]
                continue
            raise InvalidParameterError(
                f"The 'metrics' parameter of {owner} must map each metric to one number. Got "
                f"{key!r}: an array of {len(value)} values instead. Record one number per "
                f"metric: their mean, or one metric each ({key}_0, {key}_1, ...); arrays "
                "belong in params or tags."
            )
    return metrics


def to_tags(mapping: Mapping[str, Any] | None, owner: str) -> dict[str, Any]:
    """Tags as stored: JSON-friendly, without the key the registry keeps for signatures."""
    tags = to_json_friendly(mapping)
    if SEAL_TAG in tags:
        raise InvalidParameterError(
            f"The 'tags' parameter of {owner} must not use the key {SEAL_TAG!r}, which the "
            "registry keeps for signatures. Got it instead: choose another tag name."
        )
    return tags
