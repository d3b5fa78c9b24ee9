"""Keeping a deployed model relevant: when to retrain, how to judge, how to roll out.

Triggers decide, a Gate judges the challenger against the champion, a rollout promotes it.
"""

from __future__ import annotations

import warnings
from typing import Any

from modeldeploy.retraining._outcomes import Decision, Outcome
from modeldeploy.retraining.gates import Gate, GateResult, score
from modeldeploy.retraining.policy import DataRequest, RetrainPolicy
from modeldeploy.retraining.rollout import CanaryRollout, Replace, Rollout
from modeldeploy.retraining.triggers import (
    TriggerContext,
    TriggerResult,
    all_of,
    any_of,
    change_detected,
    drift_detected,
    every,
    metric_above,
    metric_below,
    new_labels,
)


def __getattr__(name: str) -> Any:
    # The former name of CanaryRollout (modeldeploy.deployers has a Canary of its own, the
    # traffic split): still works, with a DeprecationWarning.
    if name == "Canary":
        warnings.warn(
            "modeldeploy.retraining.Canary was renamed CanaryRollout (the deployers' Canary is "
            "the traffic split); import CanaryRollout instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return CanaryRollout
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CanaryRollout",
    "DataRequest",
    "Decision",
    "Gate",
    "GateResult",
    "Outcome",
    "Replace",
    "RetrainPolicy",
    "Rollout",
    "TriggerContext",
    "TriggerResult",
    "all_of",
    "any_of",
    "change_detected",
    "drift_detected",
    "every",
    "metric_above",
    "metric_below",
    "new_labels",
    "score",
]
