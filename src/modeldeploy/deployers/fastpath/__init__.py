"""The documented import path of the fast paths, kept: they live in `modeldeploy.fastpath`.

``from modeldeploy.deployers.fastpath import compile_fast_path`` goes on working.
"""

from __future__ import annotations

from modeldeploy.fastpath import FastPath, FastPathReport, compile_fast_path

__all__ = ["FastPath", "FastPathReport", "compile_fast_path"]
