"""Serving models: in real time (OnlineDeployer), in batches (BatchDeployer), or your own.

Custom deployers subclass :class:`Deployer`; a plain function deploys with ``FunctionDeployer``.
"""

from __future__ import annotations
