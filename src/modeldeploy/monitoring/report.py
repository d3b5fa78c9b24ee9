"""A snapshot of a Monitor as a dict, a DataFrame, notebook HTML, plots and an HTML file.

A report holds counts, metrics and statistics only, never rows of data, so the HTML file stays
small and can be shared.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modeldeploy.exceptions import MissingDependencyError
from modeldeploy.monitoring._results import drift_table_head, drift_table_row

__all__ = ["Report"]

_SHOWN_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "estimated_accuracy",
    "estimated_f1",
    "mae",
    "rmse",
    "r2",
    "error_rate",
    "latency_p50",
    "latency_p99",
)


def _has_data(value: Any) -> bool:
    """False for a value the window could not compute (missing, None or NaN)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


#: The look of a notebook's rendered tables (JupyterLab's), for the standalone HTML file.
_REPORT_CSS = (
    "body{margin:2em auto;max-width:64em;padding:0 1em;color:rgba(0,0,0,.87);"
    "font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;"
    "font-size:14px;line-height:1.4}"
    "h3{font-size:1.3em;margin:.5em 0}"
    "table{border:none;border-collapse:collapse;border-spacing:0;font-size:12px;"
    "margin:1em 0;table-layout:fixed}"
    "caption{caption-side:top;text-align:left;font-weight:bold;padding:.4em 0;white-space:nowrap}"
    "thead{border-bottom:1px solid black;vertical-align:bottom}"
    "td,th{text-align:right;vertical-align:middle;padding:.5em;line-height:normal;"
    "white-space:normal;max-width:none;border:none}"
    "th{font-weight:bold}"
    "tbody tr:nth-child(odd){background:#f5f5f5}"
    "tbody tr:hover{background:rgba(66,165,245,.2)}"
    "td:first-child,th:first-child{text-align:left}"
    "ul{padding-left:1.5em}"
)


class Report:
    """What a [`Monitor`][modeldeploy.Monitor] saw, at one moment.

    Parameters
    ----------
    data
        The snapshot, as [`Monitor.report`][modeldeploy.Monitor.report] builds it.

    Examples
    --------
    >>> r = Report({"name": "demo", "metrics": {"f1": 0.9, "n_labelled": 10}, "drift": None})
    >>> r
    Report('demo': f1=0.9, 0 drifted features, 0 alerts)
    >>> r.to_dict()["metrics"]["f1"]
    0.9
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    @property
    def metrics(self) -> dict[str, float]:
        """The window's metrics."""
        return dict(self._data.get("metrics") or {})

    @property
    def version_metrics(self) -> dict[str, dict[str, float]]:
        """Each model version's metrics, when the window saw more than one (else empty)."""
        return {k: dict(v) for k, v in (self._data.get("version_metrics") or {}).items()}

    @property
    def drifted(self) -> list[str]:
        """Names of the drifted features (and ``"prediction"``)."""
        drift = self._data.get("drift") or {}
        return list(drift.get("drifted", []))

    def to_dict(self) -> dict[str, Any]:
        """The whole snapshot as a JSON-friendly dict."""
        return dict(self._data)

    def to_frame(self) -> Any:
        """The drift table as a pandas DataFrame, one row per feature (and the predictions).

        Raises
        ------
        MissingDependencyError
            When pandas is not installed (``pip install 'modeldeploy[pandas]'``).
        """
        try:
            import pandas as pd
        except ImportError:
            raise MissingDependencyError("pandas", "pandas", "Report.to_frame()") from None
        rows = self._drift_rows()
        columns = [
            "feature",
            "kind",
            "test",
            "statistic",
            "p_value",
            "psi",
            "n_reference",
            "n_current",
            "drifted",
            "method",
        ]
        return pd.DataFrame(rows, columns=columns).set_index("feature")

    def metrics_frame(self) -> Any:
        """The metric history (one row per check) as a pandas DataFrame indexed by time."""
        try:
            import pandas as pd
        except ImportError:
            raise MissingDependencyError("pandas", "pandas", "Report.metrics_frame()") from None
        frame = pd.DataFrame(self._data.get("history") or [])
        if "time" in frame:
            frame.index = pd.to_datetime(frame.pop("time"), unit="s", utc=True)
        return frame

    def _drift_rows(self) -> list[dict[str, Any]]:
        drift = self._data.get("drift") or {}
        rows = list((drift.get("features") or {}).values())
        if drift.get("prediction"):
            rows.append(drift["prediction"])
        return rows

    def __repr__(self) -> str:
        m = self.metrics
        key = next((k for k in ("f1", "rmse", "accuracy") if k in m), None)
        shown = f"{key}={_fmt(m[key])}, " if key else ""
        return (
            f"Report({self._data.get('name')!r}: {shown}{len(self.drifted)} drifted features, "
            f"{len(self._data.get('alerts') or [])} alerts)"
        )

    # ------------------------------------------------------------------ HTML

    def _repr_html_(self) -> str:
        return self._html(images=())

    def _html(self, images: tuple[str, ...]) -> str:
        d = self._data
        esc = html.escape
        metrics = self.metrics
        metric_rows = "".join(
            f"<tr><td>{esc(k)}</td><td>{esc(_fmt(metrics[k]))}</td></tr>"
            for k in (*_SHOWN_METRICS, "n_predictions", "n_labelled")
            if _has_data(metrics.get(k))
        )
        thresholds = d.get("thresholds") or {}
        drift_rows = "".join(drift_table_row(r) for r in self._drift_rows() if r.get("n_current"))
        alerts = "".join(
            f"<li>{esc(a['at'][:19])} {esc(a['message'])}</li>" for a in d.get("alerts") or []
        )
        versions = self._versions_html()
        labels = d.get("labels") or {}
        label_text = ", ".join(f"{esc(k)} {v}" for k, v in labels.items() if v)
        imgs = "".join(
            f'<img alt="monitor plot" src="data:image/png;base64,{b}" style="max-width:100%"/>'
            for b in images
        )
        head = drift_table_head()
        title = esc(str(d.get("name") or "Monitor"))
        return (
            f'<div class="modeldeploy-report"><h3>{title} report</h3>'
            f"<p>{esc(str(d.get('task') or ''))}, window {esc(str(d.get('window') or ''))}, "
            f"{d.get('rows_logged', 0)} rows logged; drift alerts by "
            f"{esc(str(thresholds.get('drift')))}; generated {esc(str(d.get('generated_at')))}"
            f"</p><table><caption>Metrics (estimated_* are estimates from probabilities, not "
            f"measured)</caption><tbody>{metric_rows}</tbody></table>"
            + (
                f"<table><caption>Drift (<b>bold</b>: the statistic that decided)</caption>"
                f"<thead><tr>{head}</tr></thead><tbody>{drift_rows}</tbody></table>"
                if drift_rows
                else "<p>Drift: no rows in the window yet.</p>"
            )
            + f"{versions}"
            f"<p>Labels: {label_text or 'none yet'}</p>"
            f"<p>Alerts:</p><ul>{alerts or '<li>none</li>'}</ul>{imgs}</div>"
        )

    def _versions_html(self) -> str:
        per_version = self.version_metrics
        if not per_version:
            return ""
        per_version = {v: m for v, m in per_version.items() if m.get("n_predictions")}
        if not per_version:
            return ""
        have = {k for m in per_version.values() for k, x in m.items() if _has_data(x)}
        keys = [k for k in (*_SHOWN_METRICS, "n_predictions", "n_labelled") if k in have]
        esc = html.escape
        head = "".join(f"<th>{esc(k)}</th>" for k in ("version", *keys))
        body = "".join(
            f"<tr><td>{esc(v)}</td>"
            + "".join(
                f"<td>{esc(_fmt(m[k])) if _has_data(m.get(k)) else '&ndash;'}</td>" for k in keys
            )
            + "</tr>"
            for v, m in per_version.items()
        )
        return (
            f"<table><caption>Per version (the window's rows of each)</caption><thead><tr>"
            f"{head}</tr></thead><tbody>{body}</tbody></table>"
        )

    def save_html(self, path: str | os.PathLike[str], *, plots: bool = True) -> Path:
        """Write a self-contained HTML file, plots embedded as PNG (no data rows in it).

        Parameters
        ----------
        path
            Where to write.
        plots
            Embed the plots of [`plot`][modeldeploy.monitoring.Report.plot] (needs matplotlib;
            skipped when it is missing and ``plots`` was left at its default).
        """
        images: tuple[str, ...] = ()
        if plots:
            try:
                fig = self.plot()
            except MissingDependencyError:
                fig = None
            if fig is not None:
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
                images = (base64.b64encode(buf.getvalue()).decode("ascii"),)
        target = Path(path)
        target.write_text(
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>modeldeploy monitor "
            f"report</title><style>{_REPORT_CSS}</style></head>"
            f"<body>{self._html(images)}</body></html>",
            encoding="utf-8",
        )
        return target

    # ------------------------------------------------------------------ plots

    def plot(self, *, metrics: tuple[str, ...] | None = None) -> Any:
        """Metrics over time with their thresholds, and drift per feature.

        Parameters
        ----------
        metrics
            Which metrics to draw over time (default: the quality metrics the monitor has).

        Returns
        -------
        matplotlib.figure.Figure

        Raises
        ------
        MissingDependencyError
            When matplotlib is not installed (``pip install 'modeldeploy[plot]'``).
        """
        try:
            from matplotlib.figure import Figure
        except ImportError:
            raise MissingDependencyError("matplotlib", "plot", "Report.plot()") from None
        d = self._data
        history = d.get("history") or []
        thresholds = d.get("thresholds") or {}
        if metrics is None:
            have = {k for p in history for k in p}
            metrics = tuple(
                k for k in ("accuracy", "f1", "estimated_f1", "rmse", "mae", "r2") if k in have
            ) or tuple(k for k in thresholds if k in have)
        # A bare Figure needs no pyplot state or GUI backend, so this is safe in servers.
        fig = Figure(figsize=(11, 4))
        ax_m, ax_d = fig.subplots(1, 2)
        rows = [p.get("rows", i) for i, p in enumerate(history)]
        for key in metrics:
            ys = [p.get(key, math.nan) for p in history]
            (line,) = ax_m.plot(rows, ys, marker=".", label=key)
            bound = thresholds.get(key)
            if isinstance(bound, (int, float)):
                ax_m.axhline(bound, linestyle="--", color=line.get_color(), alpha=0.7)
        ax_m.set_xlabel("rows logged")
        ax_m.set_title("metrics over time (dashed: thresholds)")
        if metrics:
            ax_m.legend(loc="best", fontsize="small")
        drift_rows = self._drift_rows()
        method = thresholds.get("drift") or "psi"
        names = [r["feature"] for r in drift_rows]
        if method == "psi":
            values = [r["psi"] for r in drift_rows]
            ax_d.axhline(thresholds.get("psi", 0.25), linestyle="--", color="red")
            ax_d.axhline(0.1, linestyle=":", color="orange")
            ax_d.set_ylabel("PSI")
        else:
            values = [
                -math.log10(max(r["p_value"], 1e-300)) if r["p_value"] == r["p_value"] else 0.0
                for r in drift_rows
            ]
            ax_d.axhline(-math.log10(thresholds.get("p_value", 0.01)), linestyle="--", color="red")
            ax_d.set_ylabel("-log10 p-value")
        colors = ["tab:red" if r["drifted"] else "tab:blue" for r in drift_rows]
        ax_d.bar(range(len(values)), values, color=colors)
        ax_d.set_xticks(range(len(names)))
        ax_d.set_xticklabels(names, rotation=60, ha="right", fontsize="small")
        ax_d.set_title(f"drift per feature by {method} (red: drifted)")
        fig.tight_layout()
        return fig
