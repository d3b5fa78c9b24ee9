"""Store records as the registry's objects: ModelVersion, Event, Signature."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from modeldeploy.registry import Signature
from modeldeploy.registry._records import parse_signature, to_event, to_model_version
from modeldeploy.registry._signing import SEAL_TAG


def _version_record(**overrides: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "name": "m",
        "version": 2,
        "created_at": "2024-05-01T12:00:00+00:00",
        "sha256": "ab" * 32,
        "size": 10,
        "format": "joblib",
        "signature": None,
        "metrics": {"f1": 0.5},
        "params": {},
        "tags": {"team": "x", SEAL_TAG: {"mac": "..."}},
        "description": "d",
        "parent": 1,
        "environment": {"python": "3.12"},
    }
    rec.update(overrides)
    return rec


def test_a_version_record_becomes_a_detached_model_version_without_the_seal() -> None:
    version = to_model_version(_version_record(), {"production": 2, "staging": 1}, None)
    assert (version.ref, version.parent, version.aliases) == ("m:2", 1, ("production",))
    assert dict(version.tags) == {"team": "x"}
    assert version.created_at.tzinfo is not None
    assert version.registry is None


def test_signatures_are_parsed_once_per_text() -> None:
    sig = Signature.infer(np.arange(6.0).reshape(3, 2))
    text = json.dumps(sig.to_dict())
    assert parse_signature(text) == sig
    assert parse_signature(text) is parse_signature(text)
    assert parse_signature(None) is None


def test_an_event_record_becomes_an_event() -> None:
    event = to_event(
        {
            "id": "7",
            "name": "m",
            "time": "2024-05-01T12:00:00+00:00",
            "kind": "promoted",
            "version": 2,
            "alias": "production",
            "previous": 1,
            "reason": "better",
            "details": {},
        }
    )
    assert (event.id, event.kind, event.alias, event.previous) == (7, "promoted", "production", 1)
