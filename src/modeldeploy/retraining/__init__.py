"""Keeping a deployed model relevant: when to retrain, how to judge, how to roll out.

Triggers decide, a Gate judges the challenger against the champion, a rollout promotes it.
"""

from __future__ import annotations

from modeldeploy.retraining.gates import Gate, GateResult, score
from modeldeploy.retraining.policy import Canary, Decision, Outcome, Replace, RetrainPolicy
from modeldeploy.retraining.triggers import (
    TriggerContext,
    TriggerResult,
    all_of,
    any_of,
    drift_detected,
    every,
    metric_above,
    metric_below,
    new_labels,
)

__all__ = [
    "Canary",
    "Decision",
    "Gate",
    "GateResult",
    "Outcome",
    "Replace",
    "RetrainPolicy",
    "TriggerContext",
    "TriggerResult",
    "all_of",
    "any_of",
    "drift_detected",
    "every",
    "metric_above",
    "metric_below",
    "new_labels",
    "score",
]
