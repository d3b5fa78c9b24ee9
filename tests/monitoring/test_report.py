"""Reports: dict, DataFrame, notebook HTML, plots and a small self-contained HTML file."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from modeldeploy.exceptions import MissingDependencyError
from modeldeploy.monitoring.monitor import Monitor
from modeldeploy.monitoring.report import Report


@pytest.fixture
def report() -> Report:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(5_000, 3))
    mon = Monitor(reference=ref, window=2_000, thresholds={"f1": 0.8, "drift": "psi"}, name="m:1")
    for k in range(10):
        X = rng.normal(size=(1_000, 3))
        X[:, 1] += 0.2 * k  # a feature drifting away
        y = (X[:, 0] > 0).astype(int)
        y_pred = np.where(rng.random(1_000) < 0.05 * k, 1 - y, y)
        mon.log_predictions(X, y_pred, y_true=y, latency_s=0.01)
    return mon.report()


def test_to_dict_is_json_and_holds_no_rows(report: Report) -> None:
    d = report.to_dict()
    text = json.dumps(d)
    assert d["name"] == "m:1" and d["rows_logged"] == 10_000
    assert d["drift"]["drifted"] == ["x1"]
    assert len(d["history"]) >= 5
    assert len(text) < 100_000


def test_to_frame_lists_each_feature_and_the_predictions(report: Report) -> None:
    frame = report.to_frame()
    assert list(frame.index) == ["x0", "x1", "x2", "prediction"]
    assert bool(frame.loc["x1", "drifted"]) and not bool(frame.loc["x0", "drifted"])
    history = report.metrics_frame()
    assert "f1" in history.columns and len(history) >= 5


def test_plot_draws_metrics_over_time_and_drift_per_feature(report: Report) -> None:
    fig = report.plot()
    ax_metrics, ax_drift = fig.axes
    assert "f1" in [line.get_label() for line in ax_metrics.get_lines()]
    assert [t.get_text() for t in ax_drift.get_xticklabels()] == ["x0", "x1", "x2", "prediction"]


def test_save_html_is_self_contained_with_an_embedded_png(report: Report, tmp_path: Path) -> None:
    path = report.save_html(tmp_path / "report.html")
    text = path.read_text()
    assert "data:image/png;base64," in text
    assert not re.search(r"(src|href)=\"(?!data:)", text)  # nothing loaded from elsewhere
    assert path.stat().st_size < 500_000
    assert "x1" in text and "m:1" in text


def test_html_repr_marks_estimates(report: Report) -> None:
    html = report._repr_html_()
    assert "<table>" in html and "estimates" in html
    assert repr(report).startswith("Report('m:1': f1=")


def test_missing_extras_raise_missing_dependency_error(
    report: Report, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingDependencyError, match=r"modeldeploy\[plot\]"):
        report.plot()
    with pytest.raises(MissingDependencyError, match=r"modeldeploy\[pandas\]"):
        report.to_frame()


@pytest.mark.parametrize(("drift", "decider", "bold"), [("psi", "PSI", "psi"), ("ks", "KS", "p")])
def test_drift_table_says_which_statistic_decided(drift: str, decider: str, bold: str) -> None:
    rng = np.random.default_rng(1)
    mon = Monitor(
        reference=rng.normal(size=(2_000, 2)),
        window=1_000,
        thresholds={"drift": drift},
        min_drift_samples=100,
    )
    X = rng.normal(size=(600, 2))
    X[:, 1] += 1.0
    mon.log_predictions(X, np.zeros(600))
    drift_result = mon.drift()
    assert {d.decided_by for d in drift_result.values()} == {"psi" if drift == "psi" else "ks"}
    html = mon.report()._repr_html_()
    rows = re.findall(r"<tr><td>(x\d)</td>(.*?)</tr>", html)
    assert [name for name, _ in rows] == ["x0", "x1"]
    for name, cells in rows:
        values = re.findall(r"<td>(.*?)</td>", cells)
        # test, statistic, p-value, PSI, n, decided by, drift: the deciding one in bold
        assert values[5] == decider
        d = drift_result[name]
        deciding = values[3] if bold == "psi" else values[2]
        assert deciding.startswith("<b>") and deciding.endswith("</b>")
        assert values[6] == ("<b>yes</b>" if d.drifted else "no")
    assert drift_result["x1"].drifted and not drift_result["x0"].drifted


def test_save_html_looks_like_the_notebook_and_drops_rows_without_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    mon = Monitor(reference=rng.normal(size=(500, 2)), window=1_000, thresholds={"f1": 0.5})
    mon.log_predictions(rng.normal(size=(100, 2)), np.ones(100), ids=list(range(100)))
    text = mon.report().save_html(tmp_path / "r.html", plots=False).read_text()
    assert "tbody tr:nth-child(odd){background:#f5f5f5}" in text  # the notebook's stripes
    assert "thead{border-bottom:1px solid black" in text
    assert ">nan<" not in text.lower()
    assert "<td>n_predictions</td><td>100</td>" in text
    assert "<td>f1</td>" not in text and "<td>accuracy</td>" not in text  # no labels yet
    empty = Monitor(reference=rng.normal(size=(500, 2)), window=1_000, thresholds={})
    html = empty.report()._repr_html_()
    assert "Drift: no rows in the window yet." in html and "<td>x0</td>" not in html
