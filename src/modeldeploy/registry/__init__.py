"""Storing and finding model versions.

The registry facade, its metadata and artifact stores, serialization formats and signatures.
"""

from __future__ import annotations

from modeldeploy.registry.formats import (
    JoblibSerializer,
    Serializer,
    SkopsSerializer,
    register_format,
)
from modeldeploy.registry.history import History
from modeldeploy.registry.registry import ModelRegistry
from modeldeploy.registry.signature import Feature, Signature
from modeldeploy.registry.stores import (
    ArtifactStore,
    LocalArtifactStore,
    MetadataStore,
    SQLiteMetadataStore,
)
from modeldeploy.registry.version import Event, ModelVersion

__all__ = [
    "ArtifactStore",
    "Event",
    "Feature",
    "History",
    "JoblibSerializer",
    "LocalArtifactStore",
    "MetadataStore",
    "ModelRegistry",
    "ModelVersion",
    "SQLiteMetadataStore",
    "Serializer",
    "Signature",
    "SkopsSerializer",
    "register_format",
]
