"""Rolling a challenger out and watching it: the canary and the guard after a promotion.

Functions over a :class:`~modeldeploy.retraining.policy.RetrainPolicy` and its state (not a
mixin, so that the policy's documented members stay its own).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from modeldeploy.exceptions import DeploymentError
from modeldeploy.registry import ModelVersion
from modeldeploy.retraining._outcomes import Canary, Decision, Outcome
from modeldeploy.retraining.gates import GateResult
from modeldeploy.retraining.triggers import LOWER_IS_BETTER, MonitorLike

if TYPE_CHECKING:
    from modeldeploy.retraining.policy import RetrainPolicy

logger = logging.getLogger("modeldeploy.retraining")


@dataclass
class CanaryState:
    """A canary in progress: who serves, since when, judged on which metric."""

    champion: ModelVersion
    challenger: ModelVersion
    rollout: Canary
    metric: str
    started: datetime


@dataclass
class GuardState:
    """A promoted version watched for harm, and the baseline it must not fall below."""

    version: ModelVersion
    previous: ModelVersion
    baseline: float
    since: datetime


def _version_metrics(monitor: Any, ref: str) -> dict[str, float]:
    try:
        metrics: dict[str, float] = monitor.metrics(version=ref)
    except TypeError:
        raise DeploymentError(
            "Judging versions separately needs a monitor with per-version metrics "
            "(monitor.metrics(version=...)), such as modeldeploy.Monitor."
        ) from None
    return metrics


def promote(
    policy: RetrainPolicy,
    monitor: MonitorLike,
    version: ModelVersion,
    champion: ModelVersion,
    deployer: Any,
    decision: Decision | None,
    result: GateResult | None,
    status: str,
    reasons: Sequence[str],
) -> Outcome:
    """Point the alias at ``version`` (swapping ``deployer`` for a plain promotion) and guard it."""
    baseline = float(monitor.metrics().get(policy.gate.metric, math.nan))
    promoted = policy.registry.promote(
        policy.name, version, alias=policy.alias, reason="; ".join(reasons)
    )
    if deployer is not None and status == "promoted":
        deployer.swap(promoted)
    policy._guard = GuardState(promoted, champion, baseline, policy.clock.now())
    logger.info("%s: %s %s", policy.name, status, promoted.ref)
    return Outcome(
        status, tuple(reasons), decision, promoted, result, details={"baseline": baseline}
    )


def start_canary(
    policy: RetrainPolicy,
    version: ModelVersion,
    champion: ModelVersion,
    deployer: Any,
    decision: Decision | None,
    result: GateResult | None,
) -> Outcome:
    """Give ``version`` the canary's share of ``deployer``'s traffic and start watching it."""
    rollout = policy.rollout
    assert isinstance(rollout, Canary)  # only called for a Canary rollout
    deployer.set_canary(version, fraction=rollout.fraction)
    metric = rollout.metric or policy.gate.metric
    policy._canary = CanaryState(champion, version, rollout, metric, policy.clock.now())
    reasons = (
        f"{version.ref} serves {rollout.fraction:.0%} of the traffic until the monitor "
        f"has {rollout.min_samples:,} labelled predictions of each version",
    )
    policy._record(
        "canary_started",
        reasons,
        version=version.version,
        details={"fraction": rollout.fraction, "metric": metric},
    )
    return Outcome("canary_started", reasons, decision, version, result)


def watch(policy: RetrainPolicy, monitor: MonitorLike, deployer: Any) -> Outcome | None:
    """Step the canary or check the guard in progress; ``None`` when neither has news."""
    if policy._canary is not None:
        return _step_canary(policy, monitor, deployer)
    if policy._guard is not None:
        return _check_guard(policy, monitor, deployer)
    return None


def _step_canary(policy: RetrainPolicy, monitor: MonitorLike, deployer: Any) -> Outcome:
    state = policy._canary
    assert state is not None
    champ = _version_metrics(monitor, state.champion.ref)
    chall = _version_metrics(monitor, state.challenger.ref)
    n_champ = int(champ.get("n_labelled", 0))
    n_chall = int(chall.get("n_labelled", 0))
    need = state.rollout.min_samples
    details = {
        "champion": {state.metric: champ.get(state.metric), "n_labelled": n_champ},
        "challenger": {state.metric: chall.get(state.metric), "n_labelled": n_chall},
    }
    if n_champ < need or n_chall < need:
        return Outcome(
            "canary_waiting",
            (
                f"labelled predictions so far: {state.champion.ref} {n_champ:,}, "
                f"{state.challenger.ref} {n_chall:,} (need {need:,} each)",
            ),
            version=state.challenger,
            details=details,
        )
    a, b = float(champ[state.metric]), float(chall[state.metric])
    gain = (a - b) if state.metric in LOWER_IS_BETTER else (b - a)
    summary = (
        f"monitored {state.metric}: {state.champion.ref} {a:.4g}, "
        f"{state.challenger.ref} {b:.4g} over {min(n_champ, n_chall):,}+ rows"
    )
    policy._canary = None
    if gain >= -state.rollout.margin:
        if deployer is not None and hasattr(deployer, "promote_canary"):
            deployer.promote_canary()
        return promote(
            policy,
            monitor,
            state.challenger,
            state.champion,
            None,
            None,
            None,
            "canary_promoted",
            (summary, "canary is no worse"),
        )
    if deployer is not None and hasattr(deployer, "clear_canary"):
        deployer.clear_canary()
    reasons = (summary, f"canary is worse by more than {state.rollout.margin:g}")
    policy._record("canary_rolled_back", reasons, version=state.challenger.version, details=details)
    return Outcome("canary_rolled_back", reasons, version=state.challenger, details=details)


def _check_guard(policy: RetrainPolicy, monitor: MonitorLike, deployer: Any) -> Outcome | None:
    guard = policy._guard
    assert guard is not None
    if policy.registry.metadata.aliases(policy.name).get(policy.alias) != guard.version.version:
        policy._guard = None  # someone moved the alias since: not ours to guard any more
        return None
    try:
        metrics = _version_metrics(monitor, guard.version.ref)
    except DeploymentError:
        metrics = monitor.metrics()
    n = int(metrics.get("n_labelled", 0))
    value = float(metrics.get(policy.gate.metric, math.nan))
    if n < policy.rollback_min_samples or math.isnan(value) or math.isnan(guard.baseline):
        return None
    drop = (
        (value - guard.baseline)
        if policy.gate.metric in LOWER_IS_BETTER
        else (guard.baseline - value)
    )
    if drop <= policy.rollback_margin:
        return None
    reasons = (
        f"{guard.version.ref} monitored {policy.gate.metric} {value:.4g} vs "
        f"{guard.baseline:.4g} for {guard.previous.ref} before it (worse by {drop:.4g} > "
        f"{policy.rollback_margin:g}) over {n:,} labelled rows",
    )
    back = policy.registry.rollback(policy.name, alias=policy.alias, reason=reasons[0])
    if deployer is not None:
        deployer.swap(back)
    policy._guard = None
    logger.warning("%s: rolled back %s -> %s", policy.name, guard.version.ref, back.ref)
    return Outcome(
        "rolled_back",
        reasons,
        version=back,
        details={"value": value, "baseline": guard.baseline, "n_labelled": n},
    )
