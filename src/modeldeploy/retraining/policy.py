"""RetrainPolicy: retrain when it is time, keep only a better model, roll it out safely."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from modeldeploy import _validation as val
from modeldeploy.exceptions import DeploymentError, InvalidParameterError, ModelDeployError
from modeldeploy.registry import ModelRegistry, ModelVersion
from modeldeploy.retraining.gates import Gate, GateResult
from modeldeploy.retraining.triggers import (
    LOWER_IS_BETTER,
    MonitorLike,
    TriggerContext,
    TriggerResult,
    run_trigger,
)

__all__ = ["Canary", "Decision", "Outcome", "Replace", "RetrainPolicy"]

logger = logging.getLogger("modeldeploy.retraining")
_OWNER = "RetrainPolicy"


@dataclass(frozen=True)
class Replace:
    """Roll out by promoting the challenger at once (deployers following the alias swap)."""


@dataclass(frozen=True)
class Canary:
    """Roll out by giving the challenger a share of the online traffic first.

    Once the monitor has ``min_samples`` labelled predictions of each version, the challenger
    is promoted when its monitored ``metric`` (default: the gate's) is no worse than the
    champion's by more than ``margin``, and withdrawn otherwise.
    """

    fraction: float = 0.1
    min_samples: int = 1_000
    metric: str | None = None
    margin: float = 0.0

    def __post_init__(self) -> None:
        val.check_float(
            self.fraction, "fraction", "Canary", min_value=0.0, max_value=1.0, min_inclusive=False
        )
        val.check_int(self.min_samples, "min_samples", "Canary", min_value=1)
        val.check_float(self.margin, "margin", "Canary", min_value=0.0)


@dataclass(frozen=True)
class Decision:
    """Whether to retrain now, and why (or why not), with each trigger's numbers."""

    retrain: bool
    reasons: tuple[str, ...]
    triggers: tuple[TriggerResult, ...] = ()
    time: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
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
    """What :meth:`RetrainPolicy.run` did.

    ``status`` is one of ``"skipped"`` (no trigger fired, or in cooldown), ``"training_failed"``,
    ``"rejected"`` (the gate refused the challenger), ``"promoted"``, ``"canary_started"``,
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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "status": self.status,
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


@dataclass
class _CanaryState:
    champion: ModelVersion
    challenger: ModelVersion
    rollout: Canary
    metric: str
    started: datetime


@dataclass
class _GuardState:
    version: ModelVersion
    previous: ModelVersion
    baseline: float
    since: datetime


def _default_clock() -> datetime:
    return datetime.now(timezone.utc)


def _version_metrics(monitor: Any, ref: str) -> dict[str, float]:
    try:
        metrics: dict[str, float] = monitor.metrics(version=ref)
    except TypeError:
        raise DeploymentError(
            "Judging versions separately needs a monitor with per-version metrics "
            "(monitor.metrics(version=...)), such as modeldeploy.Monitor."
        ) from None
    return metrics


class RetrainPolicy:
    """When to retrain, how to judge the challenger, how to roll it out and when to roll back.

    Parameters
    ----------
    registry, name
        The registry and the model the policy maintains.
    trainer
        ``trainer(X, y) -> fitted model``, or a scikit-learn estimator (cloned and fit).
    triggers
        Callables over a :class:`~modeldeploy.retraining.triggers.TriggerContext`; retraining
        happens when any fires (combine with ``all_of`` for "and").
    gate
        The :class:`Gate` a challenger must pass on the holdout (default: not worse on ``f1``).
    rollout
        :class:`Replace` (default) or :class:`Canary`.
    cooldown
        The least time between two retrains, so a policy cannot thrash.
    alias
        The alias that serves the champion.
    holdout
        Share of the data held out for the gate when ``data()`` returns only ``(X, y)``.
    rollback_margin
        After a promotion, roll back when the new version's monitored gate metric falls below
        the champion's by more than this (SageMaker's deployment guardrails do this with alarms).
    rollback_min_samples
        Labelled predictions of the new version the monitor needs before it may roll back.
    random_state
        Seed of the holdout split.
    clock
        Returns the current UTC time (for tests).

    Examples
    --------
    >>> import tempfile
    >>> from datetime import timedelta
    >>> from sklearn.linear_model import LogisticRegression
    >>> from modeldeploy.retraining import Gate, metric_below, every
    >>> policy = RetrainPolicy(
    ...     ModelRegistry(tempfile.mkdtemp()), "churn",
    ...     trainer=lambda X, y: LogisticRegression().fit(X, y),
    ...     triggers=[metric_below("f1", 0.80, min_samples=2_000), every(days=7)],
    ...     gate=Gate(metric="f1", min_improvement=0.01), cooldown=timedelta(hours=6))
    >>> policy
    RetrainPolicy('churn' @production, 2 triggers, gate f1 +0.01, Replace)
    """

    def __init__(
        self,
        registry: ModelRegistry,
        name: str,
        *,
        trainer: Any,
        triggers: Sequence[Callable[[TriggerContext], Any]] = (),
        gate: Gate | None = None,
        rollout: Replace | Canary | None = None,
        cooldown: timedelta = timedelta(hours=6),
        alias: str = "production",
        holdout: float = 0.25,
        rollback_margin: float = 0.05,
        rollback_min_samples: int = 500,
        random_state: int | None = 0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not isinstance(registry, ModelRegistry):
            raise InvalidParameterError(
                f"The 'registry' parameter of {_OWNER} must be a ModelRegistry. Got "
                f"{type(registry).__name__!r} instead."
            )
        if not callable(trainer) and not hasattr(trainer, "fit"):
            raise InvalidParameterError(
                f"The 'trainer' parameter of {_OWNER} must be a callable trainer(X, y) or an "
                f"estimator with fit. Got {type(trainer).__name__!r} instead."
            )
        self.registry = registry
        self.name = val.check_name(name, "name", _OWNER)
        self.trainer = trainer
        self.triggers = list(triggers)
        self.gate = gate if gate is not None else Gate()
        self.rollout = rollout if rollout is not None else Replace()
        if not isinstance(cooldown, timedelta) or cooldown < timedelta(0):
            raise InvalidParameterError(
                f"The 'cooldown' parameter of {_OWNER} must be a timedelta >= 0. Got "
                f"{cooldown!r} instead."
            )
        self.cooldown = cooldown
        self.alias = val.check_name(alias, "alias", _OWNER)
        self.holdout = val.check_float(
            holdout, "holdout", _OWNER, min_value=0.0, max_value=0.9, min_inclusive=False
        )
        self.rollback_margin = val.check_float(
            rollback_margin, "rollback_margin", _OWNER, min_value=0.0
        )
        self.rollback_min_samples = val.check_int(
            rollback_min_samples, "rollback_min_samples", _OWNER, min_value=1
        )
        self.random_state = random_state
        self.clock = clock if clock is not None else _default_clock
        self._lock = threading.RLock()
        self._canary: _CanaryState | None = None
        self._guard: _GuardState | None = None
        self._last_retrain: datetime | None = None
        self._labels_at_last_retrain = 0
        self._restored = False

    def __repr__(self) -> str:
        gate = f"gate {self.gate.metric} +{self.gate.min_improvement:g}"
        rollout = type(self.rollout).__name__
        return (
            f"RetrainPolicy({self.name!r} @{self.alias}, {len(self.triggers)} triggers, "
            f"{gate}, {rollout})"
        )

    # ------------------------------------------------------------------ state

    def _restore(self) -> None:
        """Read the last retrain from the registry history, so cooldowns survive restarts."""
        if self._restored:
            return
        self._restored = True
        try:
            history = self.registry.history(self.name)
        except ModelDeployError:
            return
        for event in reversed(history):
            if event.kind in ("retrained", "challenger_rejected"):
                self._last_retrain = event.time
                self._labels_at_last_retrain = int(event.details.get("labels_seen", 0))
                break

    def _record(
        self,
        kind: str,
        reasons: Sequence[str],
        *,
        version: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        try:
            self.registry.record_event(
                self.name,
                kind,
                version=version,
                alias=self.alias,
                reason="; ".join(reasons),
                details=details or {},
            )
        except ModelDeployError:  # the model may not exist yet: nothing to attach the event to
            logger.info("%s %s: %s", kind, self.name, "; ".join(reasons))

    # ------------------------------------------------------------------ deciding

    def evaluate(self, monitor: MonitorLike) -> Decision:
        """Decide whether to retrain now; nothing is changed or recorded."""
        with self._lock:
            self._restore()
            now = self.clock()
            context = TriggerContext(monitor, now, self._last_retrain, self._labels_at_last_retrain)
            results = tuple(run_trigger(t, context) for t in self.triggers)
            fired = [r for r in results if r.fired]
            until = (self._last_retrain + self.cooldown) if self._last_retrain else None
            if self._canary is not None:
                return Decision(
                    False,
                    (f"a canary of {self._canary.challenger.ref} is running",),
                    results,
                    now,
                    until,
                )
            if not fired:
                reasons = tuple(f"{r.trigger}: {r.reason}" for r in results) or (
                    "no triggers configured",
                )
                return Decision(False, reasons, results, now, until)
            reasons = tuple(f"{r.trigger}: {r.reason}" for r in fired)
            if until is not None and now < until:
                return Decision(
                    False,
                    (f"in cooldown until {until:%Y-%m-%d %H:%M}Z", *reasons),
                    results,
                    now,
                    until,
                )
            return Decision(True, reasons, results, now, until)

    # ------------------------------------------------------------------ acting

    def run(
        self,
        monitor: MonitorLike,
        data: Callable[[], Any] | None = None,
        deployer: Any = None,
        *,
        force: bool = False,
    ) -> Outcome:
        """One step of the loop: watch a rollout in progress, or decide, retrain, judge, roll out.

        Parameters
        ----------
        monitor
            The monitor of the deployment.
        data
            ``data() -> (X, y)`` (a holdout is split off) or ``(X_train, y_train, X_holdout,
            y_holdout)``: recent labelled data. Called only when retraining.
        deployer
            The online deployer to swap or give a canary share (needed for :class:`Canary`).
        force
            Retrain even though no trigger fired (the cooldown still applies).
        """
        if isinstance(self.rollout, Canary) and (
            deployer is None or not hasattr(deployer, "set_canary")
        ):
            raise InvalidParameterError(
                "A Canary rollout needs the online deployer: policy.run(monitor, data, "
                "deployer=dep)."
            )
        with self._lock:
            watched = self._watch(monitor, deployer)
            if watched is not None:
                return watched
            decision = self.evaluate(monitor)
            if force and not decision.retrain and self._canary is None:
                until = decision.cooldown_until
                if until is None or decision.time >= until:
                    decision = Decision(
                        True, ("forced", *decision.reasons), decision.triggers, decision.time, until
                    )
            if not decision.retrain:
                self._record("retrain_skipped", decision.reasons, details=decision.to_dict())
                return Outcome("skipped", decision.reasons, decision)
            if data is None:
                raise InvalidParameterError(
                    f"{_OWNER}.run needs data=, a callable returning recent labelled data, to "
                    "retrain."
                )
            self._record("retrain_decided", decision.reasons, details=decision.to_dict())
            return self._retrain(monitor, data, deployer, decision)

    def _split(self, data: Callable[[], Any]) -> tuple[Any, Any, Any, Any]:
        got = data()
        if isinstance(got, tuple) and len(got) == 4:
            return got
        if isinstance(got, tuple) and len(got) == 2:
            from sklearn.model_selection import train_test_split

            X, y = got
            parts = train_test_split(X, y, test_size=self.holdout, random_state=self.random_state)
            return parts[0], parts[2], parts[1], parts[3]
        raise InvalidParameterError(
            "The 'data' callable of RetrainPolicy.run must return (X, y) or (X_train, y_train, "
            f"X_holdout, y_holdout). Got {type(got).__name__} instead."
        )

    def _fit(self, X: Any, y: Any) -> Any:
        if hasattr(self.trainer, "fit") and hasattr(self.trainer, "get_params"):
            from sklearn.base import clone

            return clone(self.trainer).fit(X, y)
        return self.trainer(X, y)

    def _retrain(
        self, monitor: MonitorLike, data: Callable[[], Any], deployer: Any, decision: Decision
    ) -> Outcome:
        labels_seen = TriggerContext(monitor, decision.time).labels_seen()
        try:
            X_train, y_train, X_hold, y_hold = self._split(data)
            challenger = self._fit(X_train, y_train)
        except Exception as exc:  # a failing trainer leaves the champion in place
            failed = (f"training failed: {type(exc).__name__}: {exc}",)
            logger.exception("retraining %s failed", self.name)
            self._record("retrain_failed", failed, details={"error": repr(exc)})
            return Outcome("training_failed", failed, decision, error=repr(exc))
        self._last_retrain = decision.time
        self._labels_at_last_retrain = labels_seen
        champion_version = self.registry.get(self.name, alias=self.alias)
        champion = champion_version.load()
        champion_input = X_hold
        if champion_version.signature is not None:
            champion_input = champion_version.signature.to_model_input(
                champion_version.signature.validate(X_hold)
            )
        result = self.gate.judge(
            _score(champion, champion_input, y_hold),
            _score(challenger, X_hold, y_hold),
            n_holdout=len(y_hold),
        )
        details = {"gate": result.to_dict(), "labels_seen": labels_seen, "triggers": decision.fired}
        if not result.passed:
            reasons: tuple[str, ...] = ("gate refused the challenger", *result.reasons)
            self._record(
                "challenger_rejected", reasons, version=champion_version.version, details=details
            )
            return Outcome("rejected", reasons, decision, gate=result)
        description = "; ".join(
            [
                f"retrained by RetrainPolicy ({', '.join(decision.fired) or 'forced'})",
                *result.reasons,
            ]
        )
        version = self.registry.register(
            self.name,
            challenger,
            sample=X_train,
            metrics={
                **{f"holdout_{k}": v for k, v in result.challenger.items()},
                **{f"champion_holdout_{k}": v for k, v in result.champion.items()},
            },
            tags={"trained_by": "RetrainPolicy", "triggers": ",".join(decision.fired)},
            description=description,
            parent=champion_version,
        )
        self._record("retrained", (description,), version=version.version, details=details)
        if isinstance(self.rollout, Canary):
            return self._start_canary(version, champion_version, deployer, decision, result)
        return self._promote(
            monitor,
            version,
            champion_version,
            deployer,
            decision,
            result,
            "promoted",
            result.reasons,
        )

    def _promote(
        self,
        monitor: MonitorLike,
        version: ModelVersion,
        champion: ModelVersion,
        deployer: Any,
        decision: Decision | None,
        result: GateResult | None,
        status: str,
        reasons: Sequence[str],
    ) -> Outcome:
        baseline = float(monitor.metrics().get(self.gate.metric, math.nan))
        promoted = self.registry.promote(
            self.name, version, alias=self.alias, reason="; ".join(reasons)
        )
        if deployer is not None and status == "promoted":
            deployer.swap(promoted)
        self._guard = _GuardState(promoted, champion, baseline, self.clock())
        logger.info("%s: %s %s", self.name, status, promoted.ref)
        return Outcome(
            status, tuple(reasons), decision, promoted, result, details={"baseline": baseline}
        )

    def _start_canary(
        self,
        version: ModelVersion,
        champion: ModelVersion,
        deployer: Any,
        decision: Decision,
        result: GateResult,
    ) -> Outcome:
        rollout = self.rollout
        assert isinstance(rollout, Canary)  # only called for a Canary rollout
        deployer.set_canary(version, fraction=rollout.fraction)
        metric = rollout.metric or self.gate.metric
        self._canary = _CanaryState(champion, version, rollout, metric, self.clock())
        reasons = (
            f"{version.ref} serves {rollout.fraction:.0%} of the traffic until the monitor "
            f"has {rollout.min_samples:,} labelled predictions of each version",
        )
        self._record(
            "canary_started",
            reasons,
            version=version.version,
            details={"fraction": rollout.fraction, "metric": metric},
        )
        return Outcome("canary_started", reasons, decision, version, result)

    # ------------------------------------------------------------------ watching rollouts

    def _watch(self, monitor: MonitorLike, deployer: Any) -> Outcome | None:
        if self._canary is not None:
            return self._step_canary(monitor, deployer)
        if self._guard is not None:
            return self._check_guard(monitor, deployer)
        return None

    def _step_canary(self, monitor: MonitorLike, deployer: Any) -> Outcome:
        state = self._canary
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
        self._canary = None
        if gain >= -state.rollout.margin:
            if deployer is not None and hasattr(deployer, "promote_canary"):
                deployer.promote_canary()
            return self._promote(
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
        self._record(
            "canary_rolled_back", reasons, version=state.challenger.version, details=details
        )
        return Outcome("canary_rolled_back", reasons, version=state.challenger, details=details)

    def _check_guard(self, monitor: MonitorLike, deployer: Any) -> Outcome | None:
        guard = self._guard
        assert guard is not None
        if self.registry.metadata.aliases(self.name).get(self.alias) != guard.version.version:
            self._guard = None  # someone moved the alias since: not ours to guard any more
            return None
        try:
            metrics = _version_metrics(monitor, guard.version.ref)
        except DeploymentError:
            metrics = monitor.metrics()
        n = int(metrics.get("n_labelled", 0))
        value = float(metrics.get(self.gate.metric, math.nan))
        if n < self.rollback_min_samples or math.isnan(value) or math.isnan(guard.baseline):
            return None
        drop = (
            (value - guard.baseline)
            if self.gate.metric in LOWER_IS_BETTER
            else (guard.baseline - value)
        )
        if drop <= self.rollback_margin:
            return None
        reasons = (
            f"{guard.version.ref} monitored {self.gate.metric} {value:.4g} vs "
            f"{guard.baseline:.4g} for {guard.previous.ref} before it (worse by {drop:.4g} > "
            f"{self.rollback_margin:g}) over {n:,} labelled rows",
        )
        back = self.registry.rollback(self.name, alias=self.alias, reason=reasons[0])
        if deployer is not None:
            deployer.swap(back)
        self._guard = None
        logger.warning("%s: rolled back %s -> %s", self.name, guard.version.ref, back.ref)
        return Outcome(
            "rolled_back",
            reasons,
            version=back,
            details={"value": value, "baseline": guard.baseline, "n_labelled": n},
        )


def _score(model: Any, X: Any, y: Any) -> dict[str, float]:
    from modeldeploy.retraining.gates import score

    task = (
        "classification"
        if hasattr(model, "classes_") or hasattr(model, "predict_proba")
        else "auto"
    )
    if task == "auto" and np.asarray(y).dtype.kind == "f":
        task = "regression"
    return score(model, X, y, task=task)
