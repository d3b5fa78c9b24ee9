"""Real-time serving: [`OnlineDeployer`][modeldeploy.OnlineDeployer] and the parts it holds.

A slot factory (load, compile, warm), an alias follower and micro-batchers, each with its own state.
"""

from __future__ import annotations

from modeldeploy.deployers.online._batcher import MicroBatcher
from modeldeploy.deployers.online.deployer import OnlineDeployer
from modeldeploy.deployers.online.traffic import DeploymentEvent, EventCallback, key_fraction

__all__ = ["DeploymentEvent", "EventCallback", "MicroBatcher", "OnlineDeployer", "key_fraction"]
