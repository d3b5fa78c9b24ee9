"""Verified fast paths: compiled predictors checked to answer exactly like their model.

Depends on the registry's signature only; the deployers use it, it never uses them.
"""

from __future__ import annotations

from modeldeploy.fastpath._attach import attach_fast_path, fast_path_key
from modeldeploy.fastpath.compile import FastPath, FastPathReport, compile_fast_path

__all__ = ["FastPath", "FastPathReport", "attach_fast_path", "compile_fast_path", "fast_path_key"]
