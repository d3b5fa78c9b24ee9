"""Records of the metadata stores as the registry's objects: versions, events, signatures."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache

from modeldeploy.registry._metadata import Record
from modeldeploy.registry._signing import SEAL_TAG
from modeldeploy.registry.signature import Signature
from modeldeploy.registry.version import Event, ModelVersion, VersionSource


@lru_cache(maxsize=256)
def parse_signature(text: str | None) -> Signature | None:
    """The [`Signature`][modeldeploy.Signature] stored as JSON text (parsed once per distinct text),
    or None."""
    return Signature.from_dict(json.loads(text)) if text else None


def to_event(rec: Record) -> Event:
    """An event record as an [`Event`][modeldeploy.Event]."""
    return Event(
        id=int(rec["id"]),
        name=rec["name"],
        time=datetime.fromisoformat(rec["time"]),
        kind=rec["kind"],
        version=rec["version"],
        alias=rec["alias"],
        previous=rec["previous"],
        reason=rec["reason"],
        details=rec["details"],
    )


def to_model_version(
    rec: Record, aliases: Mapping[str, int], source: VersionSource | None
) -> ModelVersion:
    """A version record as a [`ModelVersion`][modeldeploy.ModelVersion] bound to ``source`` (its
    registry)."""
    return ModelVersion(
        name=rec["name"],
        version=int(rec["version"]),
        created_at=datetime.fromisoformat(rec["created_at"]),
        sha256=rec["sha256"],
        size=int(rec["size"]),
        format=rec["format"],
        signature=parse_signature(rec["signature"]),
        metrics=rec["metrics"],
        params=rec["params"],
        tags={k: v for k, v in rec["tags"].items() if k != SEAL_TAG},
        description=rec["description"],
        parent=rec["parent"],
        environment=rec["environment"],
        aliases=tuple(sorted(a for a, v in aliases.items() if v == rec["version"])),
        _registry=source,
    )
