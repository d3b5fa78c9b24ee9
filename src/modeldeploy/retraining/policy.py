"""RetrainPolicy: retrain when it is time, keep only a better model, roll it out safely."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from modeldeploy import _validation as val
from modeldeploy._clock import as_clock
from modeldeploy.exceptions import (
    InvalidParameterError,
    ModelDeployError,
    VersionNotFoundError,
)
from modeldeploy.fastpath import attach_fast_path
from modeldeploy.registry import ModelRegistry, ModelVersion, Signature
from modeldeploy.retraining._outcomes import Decision, Outcome
from modeldeploy.retraining.gates import Gate, GateResult, score
from modeldeploy.retraining.rollout import (
    Challenger,
    Release,
    Replace,
    Rollout,
    Watch,
)
from modeldeploy.retraining.triggers import TriggerContext, run_trigger
from modeldeploy.typing import Clock, MonitorView, SupportsFlush, SwapTarget

__all__ = ["DataRequest", "RetrainPolicy"]

logger = logging.getLogger("modeldeploy.retraining")
_OWNER = "RetrainPolicy"


class RetrainPolicy:
    """When to retrain, how to judge the challenger, how to roll it out and when to roll back.

    Parameters
    ----------
    registry, name
        The registry and the model the policy maintains.
    trainer
        ``trainer(X, y) -> fitted model``, or a scikit-learn estimator (cloned and fit).
    triggers
        Callables over a [`TriggerContext`][modeldeploy.retraining.triggers.TriggerContext];
        retraining happens when any fires (combine with ``all_of`` for "and").
    gate
        The [`Gate`][modeldeploy.retraining.Gate] a challenger must pass on the holdout (default:
        not worse on ``f1``).
    rollout
        [`Replace`][modeldeploy.retraining.Replace] (default) or
        [`CanaryRollout`][modeldeploy.retraining.CanaryRollout].
    cooldown
        The least time between a rollout (a promotion or a canary) and the next retrain, so a
        policy cannot thrash.
    retry_labels
        Back-off after a retrain that did not go out (the gate refused the challenger, training
        or judging failed, or the guard rolled the promotion back): the next try waits until
        this many new labels arrived, doubling with each failure in a row (1,000, 2,000,
        4,000, ...), so it trains on more of the new data; never longer than ``cooldown``.
    alias
        The alias that serves the champion.
    holdout
        Share of the data held out for the gate when ``data()`` returns only ``(X, y)``: the
        *last* rows, taken as time-ordered (oldest first), so the gate judges both models on
        the most recent labelled data rather than on a random split of a window that may
        straddle a change.
    rollback_margin
        After a promotion, roll back when the new version's monitored gate metric falls below
        the champion's by more than this (SageMaker's deployment guardrails do this with alarms).
    rollback_min_samples
        Labelled predictions of the new version the monitor needs before it may roll back.
    random_state
        Kept for compatibility; the holdout is the most recent rows, not a random split.
    clock
        Where the policy reads time (a [`Clock`][modeldeploy.typing.Clock]; a bare callable
        returning an aware ``datetime`` still works). Default: the registry's clock, so the
        cooldown compares times from one source: the policy's ``now`` with the times the
        registry stamped on its history, which is where a restarted policy finds its last
        retrain. Given another clock, a last retrain that lies in the policy's future (the two
        clocks disagree) is taken as having happened when the policy first reads it, with a
        warning, so the cooldown still ends.

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
        rollout: Rollout | None = None,
        cooldown: timedelta = timedelta(hours=6),
        retry_labels: int = 1_000,
        alias: str = "production",
        holdout: float = 0.25,
        rollback_margin: float = 0.05,
        rollback_min_samples: int = 500,
        random_state: int | None = 0,
        clock: Clock | Callable[[], datetime] | None = None,
    ) -> None:
        self.registry = val.check_instance(registry, ModelRegistry, "registry", _OWNER)
        if not hasattr(trainer, "fit"):
            val.check_callable(
                trainer,
                "trainer",
                _OWNER,
                expected="a callable trainer(X, y) or an estimator with fit",
            )
        self.name = val.check_name(name, "name", _OWNER)
        self.trainer = trainer
        self.triggers = list(triggers)
        self.gate = gate if gate is not None else Gate()
        self.rollout: Rollout = val.check_instance(
            rollout if rollout is not None else Replace(),
            Rollout,
            "rollout",
            _OWNER,
            expected="a Replace, a CanaryRollout or None",
        )
        self.cooldown = val.check_timedelta(cooldown, "cooldown", _OWNER)
        self.retry_labels = val.check_int(retry_labels, "retry_labels", _OWNER, min_value=1)
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
        self.clock: Clock = registry.clock if clock is None else as_clock(clock, _OWNER)
        self._lock = threading.RLock()
        # The canary in progress or the guard after a promotion; it owns its own state.
        self._watch: Watch | None = None
        self._last_retrain: datetime | None = None
        self._labels_at_last_retrain = 0
        self._pending: _Pending | None = None
        self._restored = False
        self._backoff: _Backoff | None = None
        # A rollback ends the cooldown of the promotion it undid: the back-off decides.
        self._cooldown_lifted = False
        # The change the policy last retrained for: its start, and the label count there.
        self._regime: tuple[datetime, int] | None = None
        self._counts: Counter[str] = Counter()

    def __repr__(self) -> str:
        gate = f"gate {self.gate.metric} +{self.gate.min_improvement:g}"
        rollout = type(self.rollout).__name__
        return (
            f"RetrainPolicy({self.name!r} @{self.alias}, {len(self.triggers)} triggers, "
            f"{gate}, {rollout})"
        )

    # ------------------------------------------------------------------ state

    def _restore(self) -> None:
        """Read the last retrain and any challenger still waiting for its rollout from the
        registry history, so that cooldowns and retries survive restarts.

        A retrain counts (for the cooldown) once its challenger was rolled out (promoted, or
        given a canary) or rejected by the gate. A challenger registered whose rollout never
        happened (it failed, or the process died in between) is pending: the next
        [`run`][modeldeploy.RetrainPolicy.run] rolls it out, unless the alias was moved by hand
        since.
        """
        if self._restored:
            return
        self._restored = True
        try:
            history = self.registry.history(self.name)
        except ModelDeployError:
            return
        promoted_at: dict[int, datetime] = {}  # version -> its first promotion after the retrain
        canaries: set[int] = set()
        failed: set[int] = set()
        alias_moved = False
        for event in reversed(history):
            kind, number = event.kind, event.version
            if kind in ("promoted", "rolled_back") and event.alias == self.alias:
                if kind == "promoted" and number is not None:
                    promoted_at[number] = event.time
                if not alias_moved and kind == "rolled_back":
                    self._cooldown_lifted = True
                    self._backoff = _Backoff.from_details(event.time, event.details)
                alias_moved = True
            elif kind == "canary_started" and number is not None:
                canaries.add(number)
            elif kind == "rollout_failed" and number is not None:
                failed.add(number)
            elif kind in ("challenger_rejected", "retrain_failed"):
                if self._backoff is None and not promoted_at and not canaries:
                    self._backoff = _Backoff.from_details(event.time, event.details)
            elif kind == "retrained" and number is not None:
                if number in promoted_at or number in canaries:
                    # A promotion retried after a failure counts from when it succeeded.
                    when = promoted_at[number] if number in failed else event.time
                    self._set_last_retrain(when, event.details)
                    break
                if not alias_moved and self._pending is None:
                    self._pending = _Pending(number, None, None, _labels(event.details))
        now = self.clock.now()
        if self._last_retrain is not None and self._last_retrain > now:
            logger.warning(
                "%s: the last retrain in the registry history (%s) lies in this policy's future "
                "(%s): the policy's clock and the registry's disagree. Counting the cooldown "
                "from now; give the policy the registry's clock (the default).",
                self.name,
                self._last_retrain.isoformat(),
                now.isoformat(),
            )
            self._last_retrain = now

    def _set_last_retrain(self, when: datetime, details: Mapping[str, Any]) -> None:
        self._last_retrain = when
        self._labels_at_last_retrain = _labels(details)
        since = details.get("since")
        if isinstance(since, str) and self._regime is None:
            try:
                start = datetime.fromisoformat(since)
            except ValueError:
                return
            self._regime = (start, _labels(details, "labels_at_change"))

    def stats(self) -> dict[str, int]:
        """What this policy did since it was created: ``runs``, ``skipped`` (runs that decided
        nothing: these are logged at DEBUG and counted here, not written to the registry
        history), ``retrains`` (challengers trained) and one count per outcome status
        (``promoted``, ``rejected``, ``training_failed``, ``rolled_back``, ...).

        Examples
        --------
        >>> import tempfile
        >>> from sklearn.dummy import DummyClassifier
        >>> from modeldeploy import Monitor
        >>> policy = RetrainPolicy(ModelRegistry(tempfile.mkdtemp()), "churn",
        ...                        trainer=DummyClassifier())
        >>> _ = policy.run(Monitor(window=100))
        >>> policy.stats()
        {'runs': 1, 'skipped': 1, 'retrains': 0}
        """
        with self._lock:
            counts = dict(self._counts)
        out = {key: counts.pop(key, 0) for key in ("runs", "skipped", "retrains")}
        return {**out, **dict(sorted(counts.items()))}

    def _release(self) -> Release:
        """Where rollouts move the alias and record events, from the current settings."""
        return Release(
            self.registry,
            self.name,
            self.alias,
            metric=self.gate.metric,
            clock=self.clock,
            rollback_margin=self.rollback_margin,
            rollback_min_samples=self.rollback_min_samples,
        )

    def _record(
        self,
        kind: str,
        reasons: Sequence[str],
        *,
        version: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self._release().record(kind, reasons, version=version, details=details)

    def _busy(self) -> str | None:
        """Why no retrain may start now (a canary runs), or ``None``."""
        return self._watch.busy if self._watch is not None else None

    # ------------------------------------------------------------------ deciding

    def evaluate(self, monitor: MonitorView) -> Decision:
        """Decide whether to retrain now; nothing is changed or recorded."""
        with self._lock:
            self._restore()
            now = self.clock.now()
            regime, at_regime = self._regime if self._regime is not None else (None, 0)
            context = TriggerContext(
                monitor,
                now,
                self._last_retrain,
                self._labels_at_last_retrain,
                regime,
                at_regime,
            )
            results = tuple(run_trigger(t, context) for t in self.triggers)
            fired = [r for r in results if r.fired]
            until = (
                self._last_retrain + self.cooldown
                if self._last_retrain is not None and not self._cooldown_lifted
                else None
            )
            busy = self._busy()
            if busy is not None:
                return Decision(
                    False,
                    (busy,),
                    results,
                    now,
                    until,
                )
            if self._pending is not None and self._pending_is_ours():
                assert self._pending is not None
                return Decision(
                    False,
                    (
                        f"{self.name}:{self._pending.version} passed the gate and waits for its "
                        "rollout, which the next run retries",
                    ),
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
            if self._backoff is not None:
                waiting = self._backoff.blocks(
                    context.labels_seen(), now, self.retry_labels, self.cooldown
                )
                if waiting is not None:
                    return Decision(False, (waiting, *reasons), results, now, until)
            return Decision(True, reasons, results, now, until)

    # ------------------------------------------------------------------ acting

    def run(
        self,
        monitor: MonitorView,
        data: Callable[..., Any] | None = None,
        deployer: SwapTarget | None = None,
        *,
        force: bool = False,
    ) -> Outcome:
        """One step of the loop: watch a rollout in progress, or decide, retrain, judge, roll out.

        Parameters
        ----------
        monitor
            The monitor of the deployment.
        data
            ``data() -> (X, y)`` (the last ``holdout`` share of the rows, taken as oldest
            first, is held out) or ``(X_train, y_train, X_holdout, y_holdout)``: recent
            labelled data. Called only when retraining. A ``data`` that takes one argument
            gets a [`DataRequest`][modeldeploy.retraining.DataRequest], whose ``since`` is when the
            change the triggers found began (``None`` when none says), so the challenger trains on
            the rows after it.
        deployer
            The online deployer to swap (a [`SwapTarget`][modeldeploy.typing.SwapTarget]), or to
            give a canary share (a [`CanaryTarget`][modeldeploy.typing.CanaryTarget], needed for
            [`CanaryRollout`][modeldeploy.retraining.CanaryRollout]). Before deciding, the policy
            flushes it (when it has ``flush()``, as [`OnlineDeployer`][modeldeploy.OnlineDeployer]
            does) and then the monitor, so the monitor holds every prediction the deployer
            served and the decision does not depend on thread timing.

        Raises
        ------
        InvalidParameterError
            When ``deployer`` cannot do what the rollout needs of it, or ``data`` is missing
            when retraining.
        force
            Retrain even though no trigger fired (the cooldown still applies).

        Returns
        -------
        Outcome
            What happened, stamped (``Outcome.time``) by the policy's clock.
        """
        self._sync(monitor, deployer)
        outcome = self._run(monitor, data, deployer, force=force)
        with self._lock:
            self._counts["runs"] += 1
            self._counts[outcome.status] += 1
        return dataclasses.replace(outcome, time=self.clock.now())

    def _sync(self, monitor: object, deployer: object) -> None:
        """Bring the monitor up to date with what the deployer served (the consistent view)."""
        if isinstance(deployer, SupportsFlush) and deployer.flush() is False:
            logger.warning(
                "%s: the deployer did not hand all its predictions to the monitor in time; "
                "deciding on what the monitor holds",
                self.name,
            )
        if isinstance(monitor, SupportsFlush):
            monitor.flush()

    def _run(
        self,
        monitor: MonitorView,
        data: Callable[..., Any] | None,
        deployer: SwapTarget | None,
        *,
        force: bool,
    ) -> Outcome:
        self.rollout.check_deployer(deployer)
        with self._lock:
            if self._watch is not None:
                watched, self._watch = self._watch.watch(self._release(), monitor, deployer)
                if watched is not None and watched.status in ("rolled_back", "canary_rolled_back"):
                    # The new version did harm: try again once more data came, as after a
                    # refused challenger.
                    labels_seen = TriggerContext(monitor, self.clock.now()).labels_seen()
                    self._backoff = _Backoff.after(self._backoff, labels_seen, self.clock.now())
                    self._cooldown_lifted = watched.status == "rolled_back"
                if watched is not None:
                    return watched
            self._restore()
            if self._pending is not None and self._busy() is None:
                retried = self._retry_rollout(monitor, deployer)
                if retried is not None:
                    return retried
            decision = self.evaluate(monitor)
            if force and not decision.retrain and self._busy() is None:
                until = decision.cooldown_until
                if until is None or decision.time >= until:
                    decision = Decision(
                        True, ("forced", *decision.reasons), decision.triggers, decision.time, until
                    )
            if not decision.retrain:
                # Not a decision: counted (stats()) and logged, kept out of the history.
                logger.debug("%s: no retrain: %s", self.name, "; ".join(decision.reasons))
                return Outcome("skipped", decision.reasons, decision)
            if data is None:
                raise InvalidParameterError(
                    f"{_OWNER}.run needs data=, a callable returning recent labelled data, to "
                    "retrain."
                )
            self._record("retrain_decided", decision.reasons, details=decision.to_dict())
            return self._retrain(monitor, data, deployer, decision)

    def _split(self, data: Callable[..., Any], request: DataRequest) -> tuple[Any, Any, Any, Any]:
        got = data(request) if _takes_request(data) else data()
        if isinstance(got, tuple) and len(got) == 4:
            return got
        if isinstance(got, tuple) and len(got) == 2:
            X, y = got
            n = len(y)
            n_hold = max(1, round(n * self.holdout)) if n > 1 else 0
            if n - n_hold < 1:
                raise InvalidParameterError(
                    f"The 'data' callable of RetrainPolicy.run returned {n} labelled rows; at "
                    "least 2 are needed (some to train on, the most recent to judge on)."
                )
            cut = n - n_hold
            return (
                _rows(X, slice(0, cut)),
                _rows(y, slice(0, cut)),
                _rows(X, slice(cut, n)),
                _rows(y, slice(cut, n)),
            )
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
        self,
        monitor: MonitorView,
        data: Callable[..., Any],
        deployer: SwapTarget | None,
        decision: Decision,
    ) -> Outcome:
        labels_seen = TriggerContext(monitor, decision.time).labels_seen()
        self._counts["retrains"] += 1
        since, labels_since = _since(decision)
        if since is not None:
            self._regime = (since, labels_seen - (labels_since or 0))
        request = DataRequest(since, decision.time, decision, labels_since)
        # Nothing a user's trainer, data or model does escapes raw: a failure is an outcome
        # with a recorded event, the champion stays, and the cooldown does not start (the next
        # run may try again).
        try:
            X_train, y_train, X_hold, y_hold = self._split(data, request)
            challenger = self._fit(X_train, y_train)
            _check_challenger(challenger)
            challenger_scores = score(challenger, X_hold, y_hold)
        except Exception as exc:
            return self._failed("training_failed", "training failed", exc, decision, labels_seen)
        champion_version = self.registry.get(self.name, alias=self.alias)
        champion = champion_version.load()
        try:
            champion_input = X_hold
            if champion_version.signature is not None:
                champion_input = champion_version.signature.to_model_input(
                    champion_version.signature.validate(X_hold)
                )
            result = self.gate.judge(
                score(champion, champion_input, y_hold), challenger_scores, n_holdout=len(y_hold)
            )
        except Exception as exc:
            return self._failed(
                "judging_failed", "judging the challenger failed", exc, decision, labels_seen
            )
        details: dict[str, Any] = {
            "gate": result.to_dict(),
            "labels_seen": labels_seen,
            "triggers": decision.fired,
            "n_train": len(y_train),
        }
        if self._regime is not None:
            details["since"] = self._regime[0].isoformat()
            details["labels_at_change"] = self._regime[1]
        if not result.passed:
            self._backoff = _Backoff.after(self._backoff, labels_seen, decision.time)
            details["attempt"] = self._backoff.attempts
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
        signature = _named_like(champion_version, X_train)
        version = self.registry.register(
            self.name,
            challenger,
            sample=X_train if signature is None else None,
            signature=signature,
            metrics={
                **{f"holdout_{k}": v for k, v in result.challenger.items()},
                **{f"champion_holdout_{k}": v for k, v in result.champion.items()},
            },
            tags={"trained_by": "RetrainPolicy", "triggers": ",".join(decision.fired)},
            description=description,
            parent=champion_version,
        )
        self._record("retrained", (description,), version=version.version, details=details)
        self._attach_fast_path(version)
        self._pending = _Pending(
            version.version, decision, result, labels_seen, champion_version.version
        )
        return self._roll_out(monitor, version, champion_version, deployer)

    def _attach_fast_path(self, version: ModelVersion) -> None:
        """Compile and store the challenger's fast path, so that replicas following the alias
        load it when it is promoted instead of compiling it during their swap. Best effort: the
        replicas compile for themselves when this fails."""
        try:
            attach_fast_path(version)
        except Exception:
            logger.warning(
                "%s: could not attach the fast path of %s; replicas will compile it",
                self.name,
                version.ref,
                exc_info=True,
            )

    def _failed(
        self, status: str, what: str, exc: Exception, decision: Decision, labels_seen: int
    ) -> Outcome:
        reasons = (f"{what}: {type(exc).__name__}: {exc}",)
        logger.error("%s: %s", self.name, reasons[0], exc_info=exc)
        self._backoff = _Backoff.after(self._backoff, labels_seen, decision.time)
        self._record(
            "retrain_failed",
            reasons,
            details={
                "error": repr(exc),
                "phase": status.removesuffix("_failed"),
                "labels_seen": labels_seen,
                "attempt": self._backoff.attempts,
            },
        )
        return Outcome(status, reasons, decision, error=repr(exc))

    def _roll_out(
        self,
        monitor: MonitorView,
        version: ModelVersion,
        champion: ModelVersion,
        deployer: SwapTarget | None,
    ) -> Outcome:
        """Roll the pending challenger out; a failure keeps it pending for the next run."""
        pending = self._pending
        assert pending is not None  # set by the caller
        reasons = pending.gate.reasons if pending.gate is not None else ()
        if pending.decision is None:
            reasons = ("rollout retried after a failure", *reasons)
        challenger = Challenger(version, champion, pending.decision, pending.gate, reasons)
        try:
            outcome, watch = self.rollout.start(self._release(), challenger, monitor, deployer)
        except Exception as exc:
            failed = (
                f"rolling out {version.ref} failed: {type(exc).__name__}: {exc}",
                "the challenger stays registered; the next run retries its rollout",
            )
            logger.error("%s: %s", self.name, failed[0], exc_info=exc)
            try:
                self._record(
                    "rollout_failed",
                    failed,
                    version=version.version,
                    details={"error": repr(exc), "labels_seen": pending.labels_seen},
                )
            except Exception:  # the registry may be what failed; the history shows the
                # challenger registered and never promoted, which a restarted policy reads too
                logger.exception("%s: could not record the failed rollout", self.name)
            return Outcome(
                "rollout_failed",
                failed,
                pending.decision,
                version,
                pending.gate,
                error=repr(exc),
            )
        self._pending = None
        self._watch = watch
        self._backoff = None
        self._cooldown_lifted = False
        self._last_retrain = (
            pending.decision.time if pending.decision is not None else self.clock.now()
        )
        self._labels_at_last_retrain = pending.labels_seen
        return outcome

    def _pending_is_ours(self) -> bool:
        """Whether the pending challenger's rollout is still to be retried (else forget it)."""
        pending = self._pending
        if pending is None:
            return False
        current = self.registry.metadata.aliases(self.name).get(self.alias)
        if (pending.champion is None and current == pending.version) or (
            pending.champion is not None and current not in (pending.champion, pending.version)
        ):
            # Promoted since, or the alias was moved by hand (or by another process): the
            # challenger's rollout is no longer ours to retry.
            logger.info("%s: no rollout to retry (the alias has moved)", self.name)
            self._pending = None
            return False
        return True

    def _retry_rollout(self, monitor: MonitorView, deployer: SwapTarget | None) -> Outcome | None:
        """Roll out the challenger whose rollout failed; ``None`` when it is gone."""
        pending = self._pending
        if pending is None or not self._pending_is_ours():
            return None
        try:
            version = self.registry.get(self.name, pending.version)
        except VersionNotFoundError:
            logger.warning(
                "%s: the challenger %s:%d waiting for its rollout was deleted; giving it up",
                self.name,
                self.name,
                pending.version,
            )
            self._pending = None
            return None
        champion = self.registry.get(self.name, alias=self.alias)
        if pending.decision is not None:  # a retry in this process: a new attempt, same verdict
            self._pending = dataclasses.replace(pending, decision=None)
        return self._roll_out(monitor, version, champion, deployer)


@dataclasses.dataclass(frozen=True)
class DataRequest:
    """What a ``data`` callable that takes an argument gets from
    [`RetrainPolicy.run`][modeldeploy.RetrainPolicy.run].

    Attributes
    ----------
    since
        When the change the triggers found began (UTC; from
        [`change_detected`][modeldeploy.retraining.triggers.change_detected]), or ``None`` when no
        trigger dates one: return the labelled rows served since then (oldest first), so the
        challenger learns the current concept only.
    now
        The decision's time, on the policy's clock.
    decision
        The [`Decision`][modeldeploy.retraining.Decision] to retrain, with each trigger's numbers.
    labels_since
        Labelled rows the monitor counted since ``since`` (``None`` when unknown).
    """

    since: datetime | None
    now: datetime
    decision: Decision
    labels_since: int | None = None


@dataclasses.dataclass(frozen=True)
class _Backoff:
    """Retraining failed ``attempts`` times in a row, the last at ``time`` with ``labels``
    labels seen; the next try waits for more labels, doubling each time."""

    attempts: int
    labels: int
    time: datetime

    @classmethod
    def after(cls, previous: _Backoff | None, labels: int, time: datetime) -> _Backoff:
        return cls((previous.attempts if previous is not None else 0) + 1, labels, time)

    @classmethod
    def from_details(cls, time: datetime, details: Mapping[str, Any]) -> _Backoff:
        return cls(max(_labels(details, "attempt"), 1), _labels(details), time)

    def blocks(
        self, labels_seen: int, now: datetime, retry_labels: int, cooldown: timedelta
    ) -> str | None:
        """Why the next try must wait, or ``None`` once enough new labels came (or the
        cooldown passed since the failure)."""
        need = retry_labels * 2 ** min(self.attempts - 1, 20)
        new = labels_seen - self.labels
        if new >= need or now >= self.time + cooldown:
            return None
        return (
            f"backing off after {self.attempts} failed or refused retrain"
            f"{'s' if self.attempts > 1 else ''} in a row: {new:,} of {need:,} new labels "
            f"(or until {self.time + cooldown:%Y-%m-%d %H:%M}Z)"
        )


def _since(decision: Decision) -> tuple[datetime | None, int | None]:
    """The latest change start among the fired triggers' values (nested ones too)."""
    found: list[tuple[datetime, int | None]] = []

    def walk(result: Mapping[str, Any]) -> None:
        if not result.get("fired"):
            return
        values = result.get("values") or {}
        since = values.get("since")
        if isinstance(since, str):
            try:
                labels = values.get("labels_since")
                found.append((datetime.fromisoformat(since), int(labels) if labels else None))
            except (TypeError, ValueError):
                pass
        for inner in values.get("results", ()) or ():
            if isinstance(inner, Mapping):
                walk(inner)

    for result in decision.triggers:
        walk(result.to_dict())
    if not found:
        return None, None
    return max(found, key=lambda f: f[0])


def _takes_request(data: Callable[..., Any]) -> bool:
    """Whether ``data`` takes a positional argument (then it gets a
    [`DataRequest`][modeldeploy.retraining.DataRequest])."""
    try:
        parameters = inspect.signature(data).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: call it as before
        return False
    for p in parameters:
        if p.kind is p.VAR_POSITIONAL:
            return True
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
            return True
    return False


def _rows(data: Any, part: slice) -> Any:
    """Rows of an array, a DataFrame or a Series, or a list, by position."""
    iloc = getattr(data, "iloc", None)
    if iloc is not None:
        return iloc[part]
    return data[part]


@dataclasses.dataclass(frozen=True)
class _Pending:
    """A challenger that passed the gate and was registered, but is not rolled out yet."""

    version: int
    decision: Decision | None  # None when retried, or read back from the history
    gate: GateResult | None
    labels_seen: int
    champion: int | None = None  # the alias's version when it failed (None: read back)


def _labels(details: Mapping[str, Any], key: str = "labels_seen") -> int:
    try:
        return int(details.get(key, 0))
    except (TypeError, ValueError):
        return 0


def _check_challenger(model: Any) -> None:
    """Refuse what a trainer returned when it cannot be a model (scoring then tries it)."""
    if model is None:
        raise InvalidParameterError(
            "The trainer returned None instead of a fitted model. Return the fitted estimator "
            "(e.g. `return model.fit(X, y)`; scikit-learn's fit returns the estimator)."
        )
    predict = getattr(model, "predict", None)
    if not callable(predict):
        raise InvalidParameterError(
            f"The trainer returned a {type(model).__name__}, which has no predict method. "
            "Return a fitted model with predict(X)."
        )


def _named_like(champion: ModelVersion, X_train: Any) -> Signature | None:
    """The challenger's signature when its training rows are a bare array of the champion's
    width: inferred from them, with the champion's feature names (an array has none of its own,
    and a canary must take the same input as the primary). None: infer from ``sample=``."""
    sig = champion.signature
    if sig is None or sig.input_type != "ndarray":
        return None
    shape: tuple[int, ...] = getattr(X_train, "shape", ())
    if type(X_train).__module__ != "numpy" or len(shape) != 2 or shape[1] != sig.n_features:
        return None
    return Signature.infer(X_train, names=sig.names)
