"""Verified fast paths: compiled predictors checked to answer exactly like their model.

Depends on the registry's signature only; the deployers use it, it never uses them.
"""

from __future__ import annotations

from modeldeploy.fastpath.compile import FastPath, FastPathReport, compile_fast_path

__all__ = ["FastPath", "FastPathReport", "compile_fast_path"]
