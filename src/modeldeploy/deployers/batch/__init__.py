"""Batch scoring: [`BatchDeployer`][modeldeploy.BatchDeployer], the run it builds, and the sources
it reads.

Data of any size in chunks with bounded memory, in parallel or on Dask, resumable.
"""

from __future__ import annotations

from modeldeploy.deployers.batch._inputs import Chunk, ChunkRef, LoadedRef
from modeldeploy.deployers.batch._results import BatchResult, SkippedChunk
from modeldeploy.deployers.batch.deployer import BatchDeployer
from modeldeploy.deployers.batch.sources import Source, open_source

__all__ = [
    "BatchDeployer",
    "BatchResult",
    "Chunk",
    "ChunkRef",
    "LoadedRef",
    "SkippedChunk",
    "Source",
    "open_source",
]
