"""Keeping a deployed model relevant: when to retrain, how to judge, how to roll out.

Triggers decide, a Gate judges the challenger against the champion, a rollout promotes it.
"""

from __future__ import annotations

from modeldeploy.retraining._outcomes import Decision, Outcome
from modeldeploy.retraining.gates import Gate, GateResult, score
from modeldeploy.retraining.policy import RetrainPolicy
from modeldeploy.retraining.rollout import CanaryRollout, Replace, Rollout
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

#: The former name of :class:`CanaryRollout` (``modeldeploy.deployers`` has a ``Canary`` of its
#: own, the traffic split). Kept working; new code should use ``CanaryRollout``.
Canary = CanaryRollout

__all__ = [
    "Canary",
    "CanaryRollout",
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
    "drift_detected",
    "every",
    "metric_above",
    "metric_below",
    "new_labels",
    "score",
]
