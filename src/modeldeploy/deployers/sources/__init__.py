"""The documented import path of batch sources, kept: they live in
`modeldeploy.deployers.batch`.

``from modeldeploy.deployers.sources import Source`` goes on working.
"""

from __future__ import annotations

from modeldeploy.deployers.batch._inputs import Chunk, ChunkRef, LoadedRef
from modeldeploy.deployers.batch._outputs import open_output, output_columns
from modeldeploy.deployers.batch.sources import Source, open_source

__all__ = [
    "Chunk",
    "ChunkRef",
    "LoadedRef",
    "Source",
    "open_output",
    "open_source",
    "output_columns",
]
