"""Which way is better for each metric: the one table monitoring and retraining share.

Every metric not listed as lower-is-better is better when higher (accuracy, precision, recall,
f1 and their averages, r2, estimated metrics). Monitoring reads it for alert thresholds (a
maximum or a minimum); retraining for gates, canaries and the guard after a promotion.
"""

from __future__ import annotations

__all__ = ["LOWER_IS_BETTER", "gain", "lower_is_better"]

#: Metrics where lower is better: errors, error rates, latencies and losses.
LOWER_IS_BETTER = frozenset(
    {
        "mae",
        "mse",
        "rmse",
        "log_loss",
        "error_rate",
        "nan_prediction_rate",
        "latency_p50",
        "latency_p95",
        "latency_p99",
    }
)


def lower_is_better(metric: str) -> bool:
    """Whether a lower value of ``metric`` is better.

    Examples
    --------
    >>> lower_is_better("rmse"), lower_is_better("f1")
    (True, False)
    """
    return metric in LOWER_IS_BETTER


def gain(metric: str, before: float, after: float) -> float:
    """How much better ``after`` is than ``before`` on ``metric`` (negative: worse).

    Examples
    --------
    >>> gain("f1", 0.80, 0.83) > 0, gain("mae", 2.0, 2.5)
    (True, -0.5)
    """
    return before - after if metric in LOWER_IS_BETTER else after - before
