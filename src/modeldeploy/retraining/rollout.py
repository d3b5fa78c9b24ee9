"""How a challenger that passed the gate goes out: [`Replace`][modeldeploy.retraining.Replace] or
[`CanaryRollout`][modeldeploy.retraining.CanaryRollout].

A rollout is configuration with ``start()``: it puts the challenger out and hands back what
must be watched from then on (a canary in progress, or the guard after a promotion), an object
that owns that state and whose ``watch()`` the policy calls on every run. The policy holds the
one watch in progress, and lends both a `Release` built from its current settings
(registry, model, alias, gate metric, rollback bounds, and the event log).
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from modeldeploy import _validation as val
from modeldeploy._metrics_direction import gain
from modeldeploy.exceptions import DeploymentError, InvalidParameterError, ModelDeployError
from modeldeploy.registry import ModelRegistry, ModelVersion
from modeldeploy.retraining._outcomes import Decision, Outcome
from modeldeploy.retraining.gates import GateResult
from modeldeploy.retraining.triggers import as_number
from modeldeploy.typing import (
    CanaryTarget,
    ChangeMonitorView,
    Clock,
    MonitorView,
    SwapTarget,
    VersionedMonitorView,
)

__all__ = ["CanaryRollout", "Replace", "Rollout"]

logger = logging.getLogger("modeldeploy.retraining")


# ---------------------------------------------------------------------- what rollouts work with


class Release:
    """One model's release line: where a rollout moves the alias and records what it did.

    Built by a [`RetrainPolicy`][modeldeploy.RetrainPolicy] from its settings and lent to
    the rollouts and to what they watch.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        name: str,
        alias: str,
        *,
        metric: str,
        clock: Clock,
        rollback_margin: float,
        rollback_min_samples: int,
    ) -> None:
        self.registry = registry
        self.name = name
        self.alias = alias
        self.metric = metric
        self.clock = clock
        self.rollback_margin = rollback_margin
        self.rollback_min_samples = rollback_min_samples

    def record(
        self,
        kind: str,
        reasons: Sequence[str],
        *,
        version: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Keep an event in the model's history (logged instead when the model is unknown)."""
        try:
            self.registry.record_event(
                self.name,
                kind,
                version=version,
                alias=self.alias,
                reason="; ".join(reasons),
                details=dict(details or {}),
            )
        except ModelDeployError:  # the model may not exist yet: nothing to attach the event to
            logger.info("%s %s: %s", kind, self.name, "; ".join(reasons))

    def serving(self) -> int | None:
        """The version number the alias points at now (``None`` when it points nowhere)."""
        return self.registry.metadata.aliases(self.name).get(self.alias)

    def promote(
        self,
        monitor: MonitorView,
        challenger: Challenger,
        deployer: SwapTarget | None,
        status: str,
        reasons: Sequence[str],
    ) -> tuple[Outcome, Guard]:
        """Point the alias at the challenger (swapping ``deployer`` to it when given) and return
        the guard that watches it for harm."""
        baseline = as_number(monitor.metrics().get(self.metric))
        promoted = self.registry.promote(
            self.name, challenger.version, alias=self.alias, reason="; ".join(reasons)
        )
        if deployer is not None:
            deployer.swap(promoted)
        logger.info("%s: %s %s", self.name, status, promoted.ref)
        outcome = Outcome(
            status,
            tuple(reasons),
            challenger.decision,
            promoted,
            challenger.gate,
            details={"baseline": baseline},
        )
        return outcome, Guard(promoted, challenger.champion, baseline, self.clock.now())


@dataclass(frozen=True)
class Challenger:
    """A registered challenger that passed the gate, and the champion it may replace."""

    version: ModelVersion
    champion: ModelVersion
    decision: Decision | None = None  # None when its rollout is retried
    gate: GateResult | None = None
    reasons: tuple[str, ...] = ()


class Watch(Protocol):
    """What a rollout leaves to watch: a canary in progress, or the guard after a promotion."""

    @property
    def busy(self) -> str | None:
        """Why no retrain may start while this runs (``None``: retraining may go on)."""

    def watch(
        self, release: Release, monitor: MonitorView, deployer: SwapTarget | None
    ) -> tuple[Outcome | None, Watch | None]:
        """One look: the news (``None`` when there is none) and what to watch next."""


def _version_metrics(monitor: MonitorView, ref: str) -> Mapping[str, float | None]:
    try:
        if isinstance(monitor, VersionedMonitorView):
            return monitor.metrics(version=ref)
    except TypeError:
        pass
    raise DeploymentError(
        "Judging versions separately needs a monitor with per-version metrics "
        "(monitor.metrics(version=...)), such as modeldeploy.Monitor."
    )


# ---------------------------------------------------------------------- the rollouts


class Rollout(ABC):
    """How a challenger goes out; [`Replace`][modeldeploy.retraining.Replace] and
    [`CanaryRollout`][modeldeploy.retraining.CanaryRollout] are the two."""

    @abstractmethod
    def check_deployer(self, deployer: object) -> None:
        """Raise [`InvalidParameterError`][modeldeploy.exceptions.InvalidParameterError] unless this
        rollout
        can work with ``deployer`` (given to
        [`RetrainPolicy.run`][modeldeploy.RetrainPolicy.run])."""

    @abstractmethod
    def start(
        self,
        release: Release,
        challenger: Challenger,
        monitor: MonitorView,
        deployer: Any,
    ) -> tuple[Outcome, Watch]:
        """Put the challenger out; return what happened and what to watch from now on."""


@dataclass(frozen=True)
class Replace(Rollout):
    """Roll out by promoting the challenger at once (deployers following the alias swap, and
    the online deployer given to ``run`` is swapped)."""

    def check_deployer(self, deployer: object) -> None:
        if deployer is not None:
            val.check_instance(
                deployer,
                SwapTarget,
                "deployer",
                "RetrainPolicy.run",
                expected="None or a deployer with swap(version) (an OnlineDeployer)",
            )

    def start(
        self,
        release: Release,
        challenger: Challenger,
        monitor: MonitorView,
        deployer: SwapTarget | None,
    ) -> tuple[Outcome, Watch]:
        return release.promote(monitor, challenger, deployer, "promoted", challenger.reasons)


@dataclass(frozen=True)
class CanaryRollout(Rollout):
    """Roll out by giving the challenger a share of the online traffic first.

    Once the monitor has ``min_samples`` labelled predictions of each version, the challenger
    is promoted when its monitored ``metric`` (default: the gate's) is no worse than the
    champion's by more than ``margin``, and withdrawn otherwise. Needs the online deployer
    (a [`CanaryTarget`][modeldeploy.typing.CanaryTarget]) in every ``RetrainPolicy.run``.

    Formerly ``Canary``, a name the traffic split of `modeldeploy.deployers` keeps;
    ``modeldeploy.retraining.Canary`` still names this class.

    Examples
    --------
    >>> CanaryRollout(fraction=0.2, min_samples=500)
    CanaryRollout(fraction=0.2, min_samples=500, metric=None, margin=0.0)
    """

    fraction: float = 0.1
    min_samples: int = 1_000
    metric: str | None = None
    margin: float = 0.0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        val.check_float(
            self.fraction, "fraction", owner, min_value=0.0, max_value=1.0, min_inclusive=False
        )
        val.check_int(self.min_samples, "min_samples", owner, min_value=1)
        val.check_float(self.margin, "margin", owner, min_value=0.0)

    def check_deployer(self, deployer: object) -> None:
        if not isinstance(deployer, CanaryTarget):
            raise InvalidParameterError(
                "A Canary rollout needs the online deployer: policy.run(monitor, data, "
                "deployer=dep), with swap, set_canary, promote_canary and clear_canary (an "
                f"OnlineDeployer). Got {type(deployer).__name__} instead."
            )

    def start(
        self,
        release: Release,
        challenger: Challenger,
        monitor: MonitorView,
        deployer: CanaryTarget,
    ) -> tuple[Outcome, Watch]:
        version = challenger.version
        deployer.set_canary(version, fraction=self.fraction)
        metric = self.metric or release.metric
        run = CanaryRun(challenger.champion, version, self, metric, release.clock.now())
        reasons = (
            f"{version.ref} serves {self.fraction:.0%} of the traffic until the monitor "
            f"has {self.min_samples:,} labelled predictions of each version",
        )
        release.record(
            "canary_started",
            reasons,
            version=version.version,
            details={"fraction": self.fraction, "metric": metric},
        )
        return Outcome(
            "canary_started", reasons, challenger.decision, version, challenger.gate
        ), run


# ---------------------------------------------------------------------- what they watch


class CanaryRun:
    """A canary in progress: who serves, since when, judged on which metric."""

    def __init__(
        self,
        champion: ModelVersion,
        challenger: ModelVersion,
        rollout: CanaryRollout,
        metric: str,
        started: datetime,
    ) -> None:
        self.champion = champion
        self.challenger = challenger
        self.rollout = rollout
        self.metric = metric
        self.started = started

    @property
    def busy(self) -> str | None:
        return f"a canary of {self.challenger.ref} is running"

    def watch(
        self, release: Release, monitor: MonitorView, deployer: SwapTarget | None
    ) -> tuple[Outcome | None, Watch | None]:
        """Wait for enough labels of both versions, then promote the canary or withdraw it."""
        champ = _version_metrics(monitor, self.champion.ref)
        chall = _version_metrics(monitor, self.challenger.ref)
        n_champ = int(as_number(champ.get("n_labelled"), 0.0))
        n_chall = int(as_number(chall.get("n_labelled"), 0.0))
        need = self.rollout.min_samples
        details = {
            "champion": {self.metric: champ.get(self.metric), "n_labelled": n_champ},
            "challenger": {self.metric: chall.get(self.metric), "n_labelled": n_chall},
        }
        if n_champ < need or n_chall < need:
            waiting = Outcome(
                "canary_waiting",
                (
                    f"labelled predictions so far: {self.champion.ref} {n_champ:,}, "
                    f"{self.challenger.ref} {n_chall:,} (need {need:,} each)",
                ),
                version=self.challenger,
                details=details,
            )
            return waiting, self
        a, b = as_number(champ.get(self.metric)), as_number(chall.get(self.metric))
        if math.isnan(a) or math.isnan(b):  # not judged yet (no labels of that class, ...)
            return Outcome(
                "canary_waiting",
                (f"monitored {self.metric} not judged yet for both versions",),
                version=self.challenger,
                details=details,
            ), self
        summary = (
            f"monitored {self.metric}: {self.champion.ref} {a:.4g}, "
            f"{self.challenger.ref} {b:.4g} over {min(n_champ, n_chall):,}+ rows"
        )
        canary = deployer if isinstance(deployer, CanaryTarget) else None
        if gain(self.metric, a, b) >= -self.rollout.margin:
            if canary is not None:
                canary.promote_canary()
            outcome, guard = release.promote(
                monitor,
                Challenger(self.challenger, self.champion),
                None,  # promote_canary made the canary the primary: no swap
                "canary_promoted",
                (summary, "canary is no worse"),
            )
            return outcome, guard
        if canary is not None:
            canary.clear_canary()
        reasons = (summary, f"canary is worse by more than {self.rollout.margin:g}")
        release.record(
            "canary_rolled_back", reasons, version=self.challenger.version, details=details
        )
        return Outcome(
            "canary_rolled_back", reasons, version=self.challenger, details=details
        ), None


class Guard:
    """A promoted version watched for harm, and the baseline it must not fall below.

    A drop is the new version's doing when its errors were high from its first predictions.
    When the monitor's change detector dates a rise of the errors to after a whole bucket the
    new version served at the old level, the world changed, not the model: the guard steps
    aside (the old version would do no better) and the policy's triggers take over.
    """

    def __init__(
        self, version: ModelVersion, previous: ModelVersion, baseline: float, since: datetime
    ) -> None:
        self.version = version
        self.previous = previous
        self.baseline = baseline
        self.since = since

    @property
    def busy(self) -> str | None:
        return None

    def _world_changed(self, monitor: MonitorView) -> bool:
        if not isinstance(monitor, ChangeMonitorView):
            return False
        change = monitor.change()
        previous = getattr(change, "previous", None)
        if not (getattr(change, "increase", False) and previous is not None):
            return False
        if previous <= self.since:
            return False
        logger.info(
            "%s: the errors rose from %s, after %s served at the old level since its promotion "
            "(%s): a change of the data, not of the model; not rolling back",
            self.version.name,
            change.start,
            self.version.ref,
            self.since,
        )
        return True

    def watch(
        self, release: Release, monitor: MonitorView, deployer: SwapTarget | None
    ) -> tuple[Outcome | None, Watch | None]:
        """Roll back once the promoted version is worse than its baseline by more than the
        margin, over enough labelled rows; stop guarding once someone else moved the alias."""
        if release.serving() != self.version.version:
            return None, None  # someone moved the alias since: not ours to guard any more
        try:
            metrics = _version_metrics(monitor, self.version.ref)
        except DeploymentError:
            metrics = monitor.metrics()
        n = int(as_number(metrics.get("n_labelled"), 0.0))
        value = as_number(metrics.get(release.metric))
        if n < release.rollback_min_samples or math.isnan(value) or math.isnan(self.baseline):
            return None, self
        drop = -gain(release.metric, self.baseline, value)
        if drop <= release.rollback_margin:
            return None, self
        if self._world_changed(monitor):
            return None, None
        reasons = (
            f"{self.version.ref} monitored {release.metric} {value:.4g} vs "
            f"{self.baseline:.4g} for {self.previous.ref} before it (worse by {drop:.4g} > "
            f"{release.rollback_margin:g}) over {n:,} labelled rows",
        )
        back = release.registry.rollback(release.name, alias=release.alias, reason=reasons[0])
        if deployer is not None:
            deployer.swap(back)
        logger.warning("%s: rolled back %s -> %s", release.name, self.version.ref, back.ref)
        outcome = Outcome(
            "rolled_back",
            reasons,
            version=back,
            details={"value": value, "baseline": self.baseline, "n_labelled": n},
        )
        return outcome, None
