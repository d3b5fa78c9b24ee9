"""The Monitor.save file: files written before the monitor was split into parts still load."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modeldeploy.exceptions import StateFileError
from modeldeploy.monitoring import Monitor
from modeldeploy.monitoring._persist import STATE_FORMAT, read_state, write_state
from modeldeploy.testing import FakeClock

DATA = Path(__file__).parent / "data"
EXPECTED = json.loads((DATA / "monitor_v2_expected.json").read_text())


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_file_saved_by_the_code_before_the_split_loads_and_reads_the_same(task: str) -> None:
    want = EXPECTED[task]
    clock = FakeClock(dt.datetime.fromisoformat(want["now"]))
    mon = Monitor.load(DATA / f"monitor_v2_{task}.npz", clock=clock)
    rep = mon.report().to_dict()
    got = _clean(
        {
            "metrics": mon.metrics(),
            "version_metrics": {v: mon.metrics(version=v) for v in mon.versions()},
            "versions": mon.versions(),
            "label_stats": mon.label_stats(),
            "drift": mon.drift().to_dict(),
            "errors": rep["errors"],
            "rows_logged": rep["rows_logged"],
            "alerts": [a.to_dict() for a in mon.alerts],
            "history": rep["history"],
            "window": rep["window"],
            "task": rep["task"],
            "now": clock.now().isoformat(),
        }
    )
    assert json.loads(json.dumps(got, sort_keys=True)) == want


def test_a_loaded_old_file_keeps_joining_labels_and_saves_again(tmp_path: Path) -> None:
    clock = FakeClock(dt.datetime.fromisoformat(EXPECTED["classification"]["now"]))
    mon = Monitor.load(DATA / "monitor_v2_classification.npz", clock=clock)
    # "early-1" waited for its prediction when the file was saved; "churn:3-50" was pending
    mon.log_predictions(None, np.array([1]), ids=["early-1"], version="churn:3")
    assert mon.log_labels(["churn:3-50"], [1])["matched"] == 1
    assert mon.label_stats()["labels_early"] == 1
    back = Monitor.load(mon.save(tmp_path / "again.npz"), clock=clock)
    assert back.label_stats() == mon.label_stats()
    assert back.metrics() == pytest.approx(mon.metrics(), nan_ok=True)


def test_state_round_trips_arrays_and_header(tmp_path: Path) -> None:
    state = {"seq": 3, "ring_n_pred": np.arange(4), "name": None}
    path = write_state(tmp_path / "s.npz", state)
    back = read_state(path)
    assert back["format"] == STATE_FORMAT and back["seq"] == 3 and back["name"] is None
    assert back["ring_n_pred"].tolist() == [0, 1, 2, 3]


def test_a_file_of_a_newer_format_says_so(tmp_path: Path) -> None:
    path = tmp_path / "new.npz"
    meta = json.dumps({"format": STATE_FORMAT + 1}).encode()
    np.savez(path, meta=np.frombuffer(meta, dtype=np.uint8))
    with pytest.raises(StateFileError, match=f"not a Monitor state file of format {STATE_FORMAT}"):
        Monitor.load(path)
