"""Prometheus metrics of what deployers serve and of what a monitor sees (``[prometheus]``).

Two parts, because Prometheus reads them in two ways:

* [`DeployerMetrics`][modeldeploy.integrations.prometheus.DeployerMetrics] holds counters and
histograms (requests, errors, timeouts,
  fallbacks, latency in seconds, rows per request, deployment events) that deployers update as
  they serve, through a
  [`DeployerMetrics.sink`][modeldeploy.integrations.prometheus.DeployerMetrics.sink] (given as
  ``monitor=``, and its ``on_event`` as ``on_event=``). They are plain ``prometheus_client``
  metrics, so they also work in its multi-process mode (``PROMETHEUS_MULTIPROC_DIR``), where each
  uvicorn or gunicorn worker writes its own values to a file and the scraped process adds them up.
* [`MonitorCollector`][modeldeploy.integrations.prometheus.MonitorCollector] reads a
[`Monitor`][modeldeploy.Monitor] when Prometheus scrapes:
  quality metrics, drift, alerts and label coverage, per version. Register it in the one process
  that exposes the monitor (a single service, or the process holding a fleet view).

[`exposition`][modeldeploy.integrations.prometheus.exposition] renders both as the Prometheus text
format, for a ``/metrics`` endpoint.

Undefined values (a metric before labels arrive, a p-value without data) are left out of the
exposition, never written as ``NaN``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from modeldeploy.exceptions import InvalidParameterError, MissingDependencyError
from modeldeploy.typing import MonitorSink

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        Counter,
        Histogram,
        generate_latest,
    )
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.multiprocess import MultiProcessCollector
    from prometheus_client.registry import Collector
except ImportError:  # pragma: no cover - the extra is installed in the test environment
    raise MissingDependencyError(
        "prometheus_client", "prometheus", "modeldeploy.integrations.prometheus"
    ) from None

__all__ = [
    "DEFAULT_LATENCY_BUCKETS",
    "DEFAULT_ROW_BUCKETS",
    "DeployerMetrics",
    "ExportableMonitor",
    "MetricsSink",
    "MonitorCollector",
    "exposition",
]

#: Request latency buckets, in seconds: 0.5 ms to 10 s.
DEFAULT_LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: Rows per scored request (or chunk): powers of four up to 65,536.
DEFAULT_ROW_BUCKETS: tuple[float, ...] = tuple(float(4**k) for k in range(9))

_OWNER = "DeployerMetrics"
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")


def _check_namespace(namespace: str, owner: str) -> str:
    if not isinstance(namespace, str) or not _NAME.match(namespace):
        raise InvalidParameterError(
            f"The 'namespace' parameter of {owner} must be a Prometheus metric name prefix "
            f"(letters, digits, '_' and ':', not starting with a digit). Got {namespace!r} "
            "instead."
        )
    return namespace


def _defined(value: Any) -> float | None:
    """``value`` as a float, or None when it is undefined (None, NaN, not a number)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


# ---------------------------------------------------------------------- deployers


class DeployerMetrics:
    """Counters and histograms of what deployers serve, updated as they serve.

    Create one per process (it registers its metric families in ``registry``) and give every
    deployer a [`sink`][modeldeploy.integrations.prometheus.DeployerMetrics.sink] as ``monitor=``
    (with your own monitor behind it, if any) and the sink's
    [`on_event`][modeldeploy.integrations.prometheus.MetricsSink.on_event] as ``on_event=``. Each
    sink labels its deployer's series.

    The metric families, each with the labels ``deployer`` and ``version`` (``"churn:3"``, or
    ``"fallback"`` for answers from the fallback):

    ``modeldeploy_requests_total``
        Answered requests (a [`BatchDeployer`][modeldeploy.BatchDeployer]: scored chunks).
    ``modeldeploy_errors_total``
        Failed requests, whether or not the fallback answered them.
    ``modeldeploy_timeouts_total``
        Failed requests that were timeouts (counted in errors too).
    ``modeldeploy_fallbacks_total``
        Requests the fallback answered (label ``deployer`` only).
    ``modeldeploy_request_latency_seconds``
        Histogram of the time from call to answer.
    ``modeldeploy_request_rows``
        Histogram of rows per answered request (a batch deployer: rows handed to the monitor
        per chunk, at most its ``monitor_rows``).
    ``modeldeploy_deployment_events_total``
        Changes of what serves, labels ``deployer`` and ``kind`` (``"swapped"``,
        ``"breaker_opened"``, ...; see [`DeploymentEvent`][modeldeploy.deployers.DeploymentEvent]).

    The counts come through the deployer's monitor feed, off the hot path; a feed that falls
    behind drops batches, which the deployer counts in ``stats()`` as ``dropped``.

    Parameters
    ----------
    registry
        Where the families are registered (default: ``prometheus_client.REGISTRY``). In
        multi-process mode the values go to ``PROMETHEUS_MULTIPROC_DIR`` whatever the registry.
    namespace
        The prefix of every metric name.
    latency_buckets
        Upper bounds of the latency histogram, in seconds.
    row_buckets
        Upper bounds of the rows histogram.

    Raises
    ------
    InvalidParameterError
        When ``registry`` already holds these families (create one ``DeployerMetrics`` per
        process and registry, and one sink per deployer).

    Examples
    --------
    >>> import numpy as np
    >>> from prometheus_client import CollectorRegistry
    >>> from sklearn.linear_model import LinearRegression
    >>> from modeldeploy import OnlineDeployer
    >>> registry = CollectorRegistry()
    >>> metrics = DeployerMetrics(registry=registry)
    >>> model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
    >>> with OnlineDeployer(model, name="demo", monitor=metrics.sink(deployer="api")) as dep:
    ...     _ = dep.predict([[0.5], [0.7]])
    ...     dep.flush()
    True
    >>> registry.get_sample_value(
    ...     "modeldeploy_requests_total", {"deployer": "api", "version": "demo"})
    1.0
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        namespace: str = "modeldeploy",
        latency_buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
        row_buckets: Sequence[float] = DEFAULT_ROW_BUCKETS,
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        self.namespace = _check_namespace(namespace, _OWNER)
        self.latency_buckets = self._check_buckets(latency_buckets, "latency_buckets")
        self.row_buckets = self._check_buckets(row_buckets, "row_buckets")
        reg = self.registry
        ns = self.namespace
        labels = ("deployer", "version")
        try:
            self.requests = Counter(
                "requests", "Answered requests.", labels, namespace=ns, registry=reg
            )
            self.errors = Counter(
                "errors",
                "Failed requests (answered by the fallback or not).",
                labels,
                namespace=ns,
                registry=reg,
            )
            self.timeouts = Counter(
                "timeouts",
                "Requests not answered within timeout_ms.",
                labels,
                namespace=ns,
                registry=reg,
            )
            self.fallbacks = Counter(
                "fallbacks",
                "Requests answered by the fallback.",
                ("deployer",),
                namespace=ns,
                registry=reg,
            )
            self.latency = Histogram(
                "request_latency_seconds",
                "Time from call to answer.",
                labels,
                namespace=ns,
                registry=reg,
                buckets=self.latency_buckets,
            )
            self.rows = Histogram(
                "request_rows",
                "Rows per answered request.",
                labels,
                namespace=ns,
                registry=reg,
                buckets=self.row_buckets,
            )
            self.events = Counter(
                "deployment_events",
                "Changes of what serves (swaps, canary, breaker).",
                ("deployer", "kind"),
                namespace=ns,
                registry=reg,
            )
        except ValueError as exc:
            raise InvalidParameterError(
                f"The registry already holds {ns}_* deployer metrics ({exc}). Create one "
                f"{_OWNER} per process and registry, and call its sink(deployer=...) once per "
                "deployer."
            ) from None

    @staticmethod
    def _check_buckets(buckets: Sequence[float], name: str) -> tuple[float, ...]:
        try:
            out = tuple(float(b) for b in buckets)
        except (TypeError, ValueError):
            out = ()
        if (
            not out
            or any(b <= 0 or not math.isfinite(b) for b in out)
            or list(out) != sorted(set(out))
        ):
            raise InvalidParameterError(
                f"The '{name}' parameter of {_OWNER} must be increasing finite numbers > 0. "
                f"Got {buckets!r} instead."
            )
        return out

    def sink(self, monitor: MonitorSink | None = None, *, deployer: str) -> MetricsSink:
        """A [`MonitorSink`][modeldeploy.typing.MonitorSink] for one deployer's ``monitor=``.

        Parameters
        ----------
        monitor
            Where the scored batches go next (your [`Monitor`][modeldeploy.Monitor]), or None.
        deployer
            The ``deployer`` label of this deployer's series.
        """
        if not isinstance(deployer, str) or not deployer:
            raise InvalidParameterError(
                f"The 'deployer' parameter of {_OWNER}.sink must be a non-empty str. Got "
                f"{deployer!r} instead."
            )
        if monitor is not None and not isinstance(monitor, MonitorSink):
            raise InvalidParameterError(
                f"The 'monitor' parameter of {_OWNER}.sink must be a MonitorSink (an object "
                f"with log_predictions and log_error, such as Monitor) or None. Got "
                f"{type(monitor).__name__} instead."
            )
        return MetricsSink(self, deployer, monitor)


class MetricsSink:
    """What [`DeployerMetrics.sink`][modeldeploy.integrations.prometheus.DeployerMetrics.sink]
    returns: counts each scored batch, then hands it on.

    A [`MonitorSink`][modeldeploy.typing.MonitorSink]; the deployer calls it from its monitor feed
    thread. ``monitor`` is the sink behind it (or None).
    """

    def __init__(self, metrics: DeployerMetrics, deployer: str, monitor: MonitorSink | None):
        self.metrics = metrics
        self.deployer = deployer
        self.monitor = monitor

    def log_predictions(
        self,
        X: Any,
        y_pred: Any,
        *,
        ids: Any = None,
        y_proba: Any = None,
        version: str | None = None,
        latency_s: float | None = None,
    ) -> None:
        """Count one answered request, then hand it to `monitor`."""
        m = self.metrics
        label = version or ""
        m.requests.labels(self.deployer, label).inc()
        if label == "fallback":
            m.fallbacks.labels(self.deployer).inc()
        latency = _defined(latency_s)
        if latency is not None:
            m.latency.labels(self.deployer, label).observe(latency)
        rows = _rows(y_pred)
        if rows is not None:
            m.rows.labels(self.deployer, label).observe(rows)
        if self.monitor is not None:
            self.monitor.log_predictions(
                X, y_pred, ids=ids, y_proba=y_proba, version=version, latency_s=latency_s
            )

    def on_event(self, event: Any) -> None:
        """Count a [`DeploymentEvent`][modeldeploy.deployers.DeploymentEvent] (give it as
        ``on_event=``)."""
        self.metrics.events.labels(self.deployer, str(event.kind)).inc()

    def log_error(self, error: BaseException, *, version: str | None = None) -> None:
        """Count one failed request (and whether it was a timeout), then hand it on."""
        m = self.metrics
        label = version or ""
        m.errors.labels(self.deployer, label).inc()
        if isinstance(error, TimeoutError):
            m.timeouts.labels(self.deployer, label).inc()
        if self.monitor is not None:
            self.monitor.log_error(error, version=version)

    def __repr__(self) -> str:
        return f"MetricsSink(deployer={self.deployer!r}, monitor={self.monitor!r})"


def _rows(y_pred: Any) -> int | None:
    try:
        return len(y_pred)
    except TypeError:
        return None


# ---------------------------------------------------------------------- monitors


@runtime_checkable
class ExportableMonitor(Protocol):
    """What [`MonitorCollector`][modeldeploy.integrations.prometheus.MonitorCollector] reads;
    [`Monitor`][modeldeploy.Monitor] (also a merged
    fleet view) is one."""

    def metrics(self, version: str | None = None) -> Mapping[str, Any]:
        """The window's metrics, of one version when given."""

    def versions(self) -> list[str]:
        """The versions with a window of their own."""

    def drift(self) -> Any:
        """A mapping of feature name to drift results, with ``prediction``."""

    def label_stats(self) -> Mapping[str, int]:
        """Label counters."""

    @property
    def alerts(self) -> list[Any]:
        """The most recent alerts."""


#: Monitor metrics with a unit or a name of their own in the exposition.
_LATENCY = {"latency_p50": "0.5", "latency_p95": "0.95", "latency_p99": "0.99"}
_RENAMED = {
    "n_predictions": ("window_predictions", "Predictions in the window."),
    "n_labelled": ("window_labelled", "Predictions in the window with their label."),
    "error_rate": ("error_ratio", "Failed requests over all requests in the window."),
}
#: Label counters that go up and down; the others only go up.
_LABEL_GAUGES = {
    "pending": "Predictions waiting for their label.",
    "labels_waiting": "Labels waiting for their prediction.",
}


class MonitorCollector(Collector):
    """A Prometheus collector that reads a monitor's state at each scrape.

    Register it in the process that holds the monitor (``registry.register(collector)``) or
    pass it to [`exposition`][modeldeploy.integrations.prometheus.exposition]. Custom collectors are
    not shared between processes: in a multi-worker service, expose the monitor from one process (or
    a merged fleet view).

    Families (prefix ``modeldeploy_monitor_``; quality metrics carry a ``version`` label, empty
    for the whole window):

    * one gauge per windowed metric: ``accuracy``, ``f1``, ``rmse``, ``r2``, ...,
      ``estimated_*``; ``window_predictions``, ``window_labelled``, ``error_ratio``,
      ``label_coverage_ratio`` (labelled over predictions), and ``latency_seconds`` with a
      ``quantile`` label;
    * ``drift_psi``, ``drift_statistic`` and ``drift_p_value`` per ``feature`` (with ``test``),
      ``drift_detected`` (1 or 0, with the deciding ``method``), ``drift_window_rows``;
    * ``alerts_recent`` per ``kind`` and ``name`` (among the last 100 alerts);
    * ``labels_*_total`` counters from ``label_stats()``, ``labels_pending`` and
      ``labels_waiting`` gauges.

    A value that is undefined (no labels yet, no rows for a version) is left out.

    Parameters
    ----------
    monitor
        A [`Monitor`][modeldeploy.Monitor] or anything with its reading methods
        ([`ExportableMonitor`][modeldeploy.integrations.prometheus.ExportableMonitor]).
    labels
        Constant labels added to every sample (``{"model": "churn"}``), e.g. when one process
        exposes several monitors.
    per_version
        Also export the metrics of each version the monitor tracks.
    namespace
        The prefix of every metric name.

    Examples
    --------
    >>> from prometheus_client import CollectorRegistry
    >>> from modeldeploy import Monitor
    >>> mon = Monitor(window=100, thresholds={})
    >>> mon.log_predictions(None, [1, 0], ids=["a", "b"], version="m:1")
    >>> _ = mon.log_labels(["a", "b"], [1, 1])
    >>> registry = CollectorRegistry()
    >>> registry.register(MonitorCollector(mon))
    >>> registry.get_sample_value("modeldeploy_monitor_accuracy", {"version": "m:1"})
    0.5
    """

    def __init__(
        self,
        monitor: ExportableMonitor,
        *,
        labels: Mapping[str, str] | None = None,
        per_version: bool = True,
        namespace: str = "modeldeploy",
    ) -> None:
        if not isinstance(monitor, ExportableMonitor):
            raise InvalidParameterError(
                "The 'monitor' parameter of MonitorCollector must be a Monitor (metrics, "
                "versions, drift, label_stats, alerts). Got "
                f"{type(monitor).__name__} instead."
            )
        const = dict(labels or {})
        for key, value in const.items():
            if not _NAME.match(key) or ":" in key or not isinstance(value, str):
                raise InvalidParameterError(
                    "The 'labels' parameter of MonitorCollector must map label names "
                    f"(letters, digits, '_') to str values. Got {key!r}: {value!r} instead."
                )
        self.monitor = monitor
        self.labels = const
        self.per_version = bool(per_version)
        self.namespace = _check_namespace(namespace, "MonitorCollector")

    def describe(self) -> Iterable[Metric]:
        # Names vary with the monitor's metrics: no fixed description, so registering never
        # reads the monitor and two collectors with distinct labels can share a registry.
        return []

    def collect(self) -> Iterator[Metric]:
        """Read the monitor and yield its metric families."""
        prefix = f"{self.namespace}_monitor_"
        const_keys = list(self.labels)
        const_values = list(self.labels.values())
        families: dict[str, GaugeMetricFamily] = {}

        def gauge(name: str, doc: str, keys: Sequence[str]) -> GaugeMetricFamily:
            if name not in families:
                families[name] = GaugeMetricFamily(prefix + name, doc, labels=[*const_keys, *keys])
            return families[name]

        mon = self.monitor
        scopes: list[tuple[str, str | None]] = [("", None)]
        if self.per_version:
            scopes += [(v, v) for v in mon.versions()]
        for label, version in scopes:
            self._quality(gauge, mon.metrics(version), label, const_values)
        self._drift(gauge, mon.drift(), const_values)
        recent: dict[tuple[str, str], int] = {}
        for alert in mon.alerts:
            key = (str(alert.kind), str(alert.name))
            recent[key] = recent.get(key, 0) + 1
        fam = gauge("alerts_recent", "Alerts among the most recent 100.", ("kind", "name"))
        for (kind, name), count in sorted(recent.items()):
            fam.add_metric([*const_values, kind, name], count)
        yield from families.values()
        yield from self._labels(mon.label_stats(), prefix, const_keys, const_values)

    @staticmethod
    def _quality(gauge: Any, metrics: Mapping[str, Any], version: str, const: list[str]) -> None:
        for key, raw in metrics.items():
            value = _defined(raw)
            if value is None or not _NAME.match(key):
                continue
            if key in _LATENCY:
                fam = gauge(
                    "latency_seconds", "Request latency quantiles.", ("version", "quantile")
                )
                fam.add_metric([*const, version, _LATENCY[key]], value)
                continue
            name, doc = _RENAMED.get(key, (key, f"Windowed {key}."))
            gauge(name, doc, ("version",)).add_metric([*const, version], value)
        n_pred = _defined(metrics.get("n_predictions"))
        n_lab = _defined(metrics.get("n_labelled"))
        if n_pred and n_lab is not None:
            gauge(
                "label_coverage_ratio",
                "Predictions in the window with their label, as a share.",
                ("version",),
            ).add_metric([*const, version], n_lab / n_pred)

    @staticmethod
    def _drift(gauge: Any, drift: Any, const: list[str]) -> None:
        rows = _defined(getattr(drift, "n_current", None))
        if rows is not None:
            gauge("drift_window_rows", "Rows in the drift window.", ()).add_metric(const, rows)
        results = list(drift.values())
        prediction = getattr(drift, "prediction", None)
        if prediction is not None:
            results.append(prediction)
        for d in results:
            feature = str(d.feature)
            psi = _defined(d.psi)
            if psi is not None:
                gauge(
                    "drift_psi", "Population stability index against the reference.", ("feature",)
                ).add_metric([*const, feature], psi)
            for attr, doc in (
                ("statistic", "Drift test statistic."),
                ("p_value", "Drift test p-value."),
            ):
                value = _defined(getattr(d, attr))
                if value is not None:
                    gauge(f"drift_{attr}", doc, ("feature", "test")).add_metric(
                        [*const, feature, str(d.test)], value
                    )
            if d.n_current:
                gauge(
                    "drift_detected",
                    "1 when the deciding statistic crossed its threshold.",
                    ("feature", "method"),
                ).add_metric([*const, feature, str(d.method)], 1.0 if d.drifted else 0.0)

    def _labels(
        self, stats: Mapping[str, int], prefix: str, keys: list[str], values: list[str]
    ) -> Iterator[Metric]:
        for key, raw in stats.items():
            value = _defined(raw)
            if value is None or not _NAME.match(key):
                continue
            name = key if key.startswith("labels_") else f"labels_{key}"
            if key in _LABEL_GAUGES:
                fam: GaugeMetricFamily | CounterMetricFamily = GaugeMetricFamily(
                    prefix + name, _LABEL_GAUGES[key], labels=keys
                )
            else:
                doc = f"Label bookkeeping: {key.replace('_', ' ')} (running count)."
                fam = CounterMetricFamily(prefix + name, doc, labels=keys)
            fam.add_metric(values, value)
            yield fam

    def __repr__(self) -> str:
        return f"MonitorCollector({self.monitor!r}, labels={self.labels!r})"


# ---------------------------------------------------------------------- exposition


def exposition(
    *collectors: Collector, registry: CollectorRegistry | None = None
) -> tuple[bytes, str]:
    """The Prometheus text of this process's metrics and of ``collectors``, with its content type.

    In multi-process mode (``PROMETHEUS_MULTIPROC_DIR`` set), the metrics are those every
    process wrote to that folder (``prometheus_client.multiprocess.MultiProcessCollector``),
    summed across the workers; otherwise those of ``registry`` (default:
    ``prometheus_client.REGISTRY``). ``collectors`` (such as a
    [`MonitorCollector`][modeldeploy.integrations.prometheus.MonitorCollector]) are read in this
    process only.

    Returns
    -------
    tuple[bytes, str]
        The body and the ``Content-Type`` to serve it with.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        base = CollectorRegistry()
        MultiProcessCollector(base)  # type: ignore[no-untyped-call]
    else:
        base = REGISTRY if registry is None else registry
    body = generate_latest(base)
    if collectors:
        extra = CollectorRegistry(auto_describe=False)
        for collector in collectors:
            extra.register(collector)
        body += generate_latest(extra)
    return body, CONTENT_TYPE_LATEST
