"""Where the registry keeps metadata and artifacts, behind two small interfaces.

[`MetadataStore`][modeldeploy.registry.stores.MetadataStore] holds models, versions, aliases and
events; [`ArtifactStore`][modeldeploy.registry.stores.ArtifactStore] holds the serialized model
files, addressed by their sha256. The embedded defaults are
[`SQLiteMetadataStore`][modeldeploy.registry.stores.SQLiteMetadataStore] (one SQLite file in WAL
mode) and [`LocalArtifactStore`][modeldeploy.registry.stores.LocalArtifactStore] (a folder). A fleet
of hosts shares [`PostgresMetadataStore`][modeldeploy.registry.stores.PostgresMetadataStore] (extra
``[postgres]``) and [`S3ArtifactStore`][modeldeploy.registry.stores.S3ArtifactStore] (extra
``[s3]``); any metadata store works with any artifact store.
[`HostArtifactCache`][modeldeploy.registry.stores.HostArtifactCache] keeps a remote store's
artifacts on each host after their first fetch.
"""

from __future__ import annotations

from modeldeploy.registry._artifacts import ArtifactStore, LocalArtifactStore
from modeldeploy.registry._host_cache import HostArtifactCache
from modeldeploy.registry._metadata import MetadataStore
from modeldeploy.registry._postgres import PostgresMetadataStore
from modeldeploy.registry._s3 import S3ArtifactStore
from modeldeploy.registry._sqlite import SQLiteMetadataStore

__all__ = [
    "ArtifactStore",
    "HostArtifactCache",
    "LocalArtifactStore",
    "MetadataStore",
    "PostgresMetadataStore",
    "S3ArtifactStore",
    "SQLiteMetadataStore",
]
