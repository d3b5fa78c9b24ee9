"""Snapshots and the fleet view: MonitorPublisher, Monitor.publish and Monitor.fleet."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from modeldeploy import ModelRegistry, MonitorPublisher
from modeldeploy.exceptions import InvalidParameterError, MergeError
from modeldeploy.monitoring.monitor import Monitor
from modeldeploy.testing import FakeClock

START = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)

# One replica: its share of the requests, labels by id (some before their prediction), a
# publisher writing its snapshot every 50 ms while it works, a last one when it closes.
_WORKER = textwrap.dedent(
    """
    import datetime as dt, sys
    import numpy as np
    from modeldeploy import Monitor, MonitorPublisher

    place, worker, n_workers, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, n)
    y_pred = np.where(rng.random(n) < 0.2, 1 - y_true, y_true)
    ids = np.arange(n, dtype=np.int64)
    mine = np.flatnonzero(np.random.default_rng(1).integers(0, n_workers, n) == worker)
    mon = Monitor(window=dt.timedelta(hours=1), reference_predictions=[0, 1], thresholds={})
    with MonitorPublisher(mon, place, replica=f"worker-{worker}", every_s=0.05):
        early = mine[:25]  # labels that overtake their predictions
        mon.log_labels(ids[early], y_true[early])
        done = 25
        for a in range(0, mine.size, 100):
            rows = mine[a : a + 100]
            mon.log_predictions(None, y_pred[rows], ids=ids[rows], latency_s=0.001 * (1 + worker))
            if a - 200 > done:  # labels come a few batches later
                late = mine[done : a - 200]
                mon.log_labels(ids[late], y_true[late])
                done = a - 200
        rest = mine[done:]
        mon.log_labels(ids[rest], y_true[rest])
    """
)


def test_four_processes_publish_and_the_fleet_view_equals_sklearn_on_all_rows(
    tmp_path: Path,
) -> None:
    n, workers = 20_000, 4
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(tmp_path), str(w), str(workers), str(n)],
            stderr=subprocess.PIPE,
        )
        for w in range(workers)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        f"worker-{w}.monitor.npz" for w in range(workers)
    ]
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, n)
    y_pred = np.where(rng.random(n) < 0.2, 1 - y_true, y_true)
    view = Monitor.fleet(tmp_path, name="fleet")
    got = view.metrics()
    assert got["n_predictions"] == n  # nothing lost, nothing counted twice
    assert got["n_labelled"] == n
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
    assert got["f1"] == pytest.approx(skm.f1_score(y_true, y_pred), abs=1e-12)
    assert got["precision"] == pytest.approx(skm.precision_score(y_true, y_pred), abs=1e-12)
    assert got["recall"] == pytest.approx(skm.recall_score(y_true, y_pred), abs=1e-12)
    stats = view.label_stats()
    assert stats["labels_total"] == n and stats["pending"] == 0
    assert stats["labels_early"] == 25 * workers
    assert stats["labels_unknown"] == stats["labels_duplicate"] == 0
    # latencies of every worker: 1 ms (worker 0) up to 4 ms (worker 3), in seconds
    assert got["latency_p50"] is not None and 0.0019 < got["latency_p50"] < 0.0032
    assert got["latency_p99"] is not None and 0.0037 < got["latency_p99"] < 0.0043
    json.dumps(view.report().to_dict(), allow_nan=False)


def _replica(clock: FakeClock, **extra: object) -> Monitor:
    kwargs: dict[str, object] = {
        "window": dt.timedelta(minutes=10),
        "reference_predictions": [0, 1],
        "thresholds": {},
        "clock": clock,
    }
    kwargs.update(extra)
    return Monitor(**kwargs)  # type: ignore[arg-type]


def test_a_stale_snapshot_is_left_out_and_a_damaged_one_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(START)
    dead, alive = _replica(clock), _replica(clock)
    dead.log_predictions(None, [1, 1], y_true=[1, 0])
    dead.publish(tmp_path, replica="dead")
    clock.advance(300)
    alive.log_predictions(None, [0, 0, 1], y_true=[0, 0, 1])
    alive.publish(tmp_path, replica="alive")
    (tmp_path / "junk.monitor.npz").write_bytes(b"not a snapshot")
    with caplog.at_level(logging.INFO, logger="modeldeploy.monitoring"):
        view = Monitor.fleet(tmp_path, clock=clock)
    assert view.metrics()["n_predictions"] == 5  # the dead replica's rows are in the window
    assert "'junk'" in caplog.text
    clock.advance(301)  # the dead replica's snapshot is older than the window now
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="modeldeploy.monitoring"):
        view = Monitor.fleet(tmp_path, clock=clock)
    assert view.metrics()["n_predictions"] == 3
    assert view.metrics()["accuracy"] == 1.0
    assert "'dead'" in caplog.text
    assert Monitor.fleet(tmp_path, clock=clock, stale_after_s=1e6).metrics()["n_predictions"] == 3
    clock.advance(3600)
    with pytest.raises(MergeError, match="No fresh monitor snapshot"):
        Monitor.fleet(tmp_path, clock=clock)


def test_snapshots_in_the_registrys_artifact_store(tmp_path: Path) -> None:
    clock = FakeClock(START)
    with ModelRegistry(tmp_path / "reg") as reg:
        parts = [_replica(clock) for _ in range(3)]
        for i, mon in enumerate(parts):
            mon.log_predictions(None, [1, 0, i % 2], y_true=[1, 1, 1])
            mon.publish(reg, replica=f"pod-{i}", fleet="churn")
            mon.publish(reg, replica=f"pod-{i}", fleet="churn")  # replaced, not added
        view = Monitor.fleet(reg, fleet="churn", clock=clock)
        assert view.metrics()["n_predictions"] == 9
        assert view.metrics()["accuracy"] == pytest.approx(4 / 9)
        stored = reg.artifacts.keys()
        assert sorted(k for k in stored if k.startswith("monitor-")) == [
            f"monitor-snapshots/churn/pod-{i}.monitor.npz" for i in range(3)
        ]
        with pytest.raises(MergeError):
            Monitor.fleet(reg, fleet="other", clock=clock)


def test_the_fleet_view_refuses_replicas_with_count_windows(tmp_path: Path) -> None:
    clock = FakeClock(START)
    for i in range(2):
        _replica(clock, window=500).publish(tmp_path, replica=f"w{i}")
    with pytest.raises(MergeError, match="count-based window"):
        Monitor.fleet(tmp_path, clock=clock)


def test_a_publisher_that_cannot_write_counts_failures_and_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the shared folder should be")
    mon = _replica(FakeClock(START))
    publisher = MonitorPublisher(mon, blocker, replica="w1", every_s=0.01)
    mon.log_predictions(None, [1], y_true=[1])
    publisher.close()
    publisher.close()  # idempotent
    assert publisher.published == 0 and publisher.failures >= 2
    assert f"{publisher.failures} failed" in repr(publisher)


def test_the_publisher_keeps_time_by_the_monitors_clock(tmp_path: Path) -> None:
    clock = FakeClock(START)
    mon = _replica(clock)
    with MonitorPublisher(mon, tmp_path, replica="w1", every_s=60) as publisher:
        assert publisher.published == 1  # at start
        clock.advance(61)
        deadline = time.monotonic() + 10
        while publisher.published < 2:
            assert time.monotonic() < deadline, "a minute of the monitor's clock passed"
            time.sleep(0.01)
    assert publisher.published == 3  # and once more at close


def test_bad_names_and_places_are_refused() -> None:
    mon = _replica(FakeClock(START))
    with pytest.raises(InvalidParameterError, match="'replica' name"):
        mon.publish("somewhere", replica="../escape")
    with pytest.raises(InvalidParameterError, match="must be a folder"):
        mon.publish(42)
    with pytest.raises(InvalidParameterError, match="every_s"):
        MonitorPublisher(mon, "somewhere", every_s=0)


def test_snapshots_in_an_s3_artifact_store(tmp_path: Path, s3_url: str) -> None:
    clock = FakeClock(START)
    with ModelRegistry(tmp_path / "reg", artifacts=s3_url) as reg:
        parts = [_replica(clock) for _ in range(2)]
        for i, mon in enumerate(parts):
            mon.log_predictions(None, [1, 1, 0, i], y_true=[1, 0, 0, 1])
            mon.publish(reg, replica=f"pod-{i}", fleet="churn")
        clock.advance(5)
        parts[0].log_predictions(None, [0], y_true=[0])
        parts[0].publish(reg, replica="pod-0", fleet="churn")  # replaces pod-0's snapshot
        view = Monitor.fleet(reg, fleet="churn", clock=clock)
        assert view.metrics()["n_predictions"] == 9
        assert view.metrics()["accuracy"] == pytest.approx(6 / 9)
