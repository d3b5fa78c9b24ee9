"""What a [`RetrainPolicy`][modeldeploy.RetrainPolicy] returns: the
[`Decision`][modeldeploy.retraining.Decision] of whether to retrain and the
[`Outcome`][modeldeploy.retraining.Outcome] of one step. Re-exported by `modeldeploy.retraining`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modeldeploy._clock import SYSTEM_CLOCK
from modeldeploy.registry import ModelVersion
from modeldeploy.retraining.gates import GateResult
from modeldeploy.retraining.triggers import TriggerResult

__all__ = ["Decision", "Outcome"]


@dataclass(frozen=True)
class Decision:
    """Whether to retrain now, and why (or why not), with each trigger's numbers."""

    retrain: bool
    reasons: tuple[str, ...]
    triggers: tuple[TriggerResult, ...] = ()
    time: datetime = field(default_factory=SYSTEM_CLOCK.now)
    cooldown_until: datetime | None = None

    def __bool__(self) -> bool:
        return self.retrain

    @property
    def fired(self) -> list[str]:
        """Names of the triggers that fired."""
        return [t.trigger for t in self.triggers if t.fired]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "retrain": self.retrain,
            "reasons": list(self.reasons),
            "triggers": [t.to_dict() for t in self.triggers],
            "time": self.time.isoformat(),
            "cooldown_until": self.cooldown_until.isoformat() if self.cooldown_until else None,
        }

    def __repr__(self) -> str:
        return f"Decision(retrain={self.retrain}, {'; '.join(self.reasons)})"


@dataclass(frozen=True)
class Outcome:
    """What [`RetrainPolicy.run`][modeldeploy.RetrainPolicy.run] did.

    ``status`` is one of ``"skipped"`` (no trigger fired, or in cooldown), ``"training_failed"``
    (the trainer or the data failed, or no usable model came back), ``"judging_failed"``,
    ``"rejected"`` (the gate refused the challenger), ``"rollout_failed"`` (the challenger is
    registered but its promotion or canary failed; the next run retries it), ``"promoted"``,
    ``"canary_started"``,
    ``"canary_waiting"``, ``"canary_promoted"``, ``"canary_rolled_back"``, ``"rolled_back"``
    (a promoted version did harm and its predecessor is back).
    """

    status: str
    reasons: tuple[str, ...]
    decision: Decision | None = None
    version: ModelVersion | None = None
    gate: GateResult | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: When the policy returned it, on the policy's clock.
    time: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "status": self.status,
            "time": self.time.isoformat() if self.time else None,
            "reasons": list(self.reasons),
            "decision": self.decision.to_dict() if self.decision else None,
            "version": self.version.ref if self.version else None,
            "gate": self.gate.to_dict() if self.gate else None,
            "error": self.error,
            "details": self.details,
        }

    def __repr__(self) -> str:
        ref = f" {self.version.ref}" if self.version else ""
        return f"Outcome({self.status}{ref}: {'; '.join(self.reasons)})"
