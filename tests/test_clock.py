"""The one clock: the system default, FakeClock, and what ``clock=`` accepts."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modeldeploy import ModelRegistry, Monitor
from modeldeploy._clock import SYSTEM_CLOCK, SystemClock, as_clock
from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.testing import FakeClock
from modeldeploy.typing import Clock


def test_the_system_clock_is_aware_utc_and_monotonic() -> None:
    assert isinstance(SYSTEM_CLOCK, Clock)
    now = SYSTEM_CLOCK.now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    a = SYSTEM_CLOCK.monotonic()
    assert SYSTEM_CLOCK.monotonic() >= a
    event = threading.Event()
    event.set()
    assert SYSTEM_CLOCK.wait(event, 5) is True
    assert SystemClock().wait(threading.Event(), 0.01) is False


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(datetime(2031, 1, 1, tzinfo=timezone.utc))
    assert isinstance(clock, Clock)
    before = clock.now()
    time.sleep(0.01)
    assert clock.now() == before and clock.monotonic() == 0.0
    clock.advance(timedelta(days=1).total_seconds())
    assert clock.now() == datetime(2031, 1, 2, tzinfo=timezone.utc)
    assert clock.monotonic() == 86_400.0
    clock.set(datetime(2030, 6, 1, tzinfo=timezone.utc))  # a step back of the wall clock
    assert clock.now().year == 2030
    assert clock.monotonic() == 86_400.0  # intervals never go back


def test_fake_clock_refuses_naive_times_and_backward_advances() -> None:
    with pytest.raises(InvalidParameterError, match="aware datetime"):
        FakeClock(datetime(2031, 1, 1))
    clock = FakeClock()
    with pytest.raises(InvalidParameterError, match="aware datetime"):
        clock.set(datetime(2031, 1, 1))
    with pytest.raises(InvalidParameterError, match="'seconds' parameter of FakeClock.advance"):
        clock.advance(-1)


def test_a_waiting_thread_wakes_when_the_fake_time_reaches_its_deadline() -> None:
    clock = FakeClock()
    results: list[bool] = []
    waiter = threading.Thread(
        target=lambda: results.append(clock.wait(threading.Event(), 60)), daemon=True
    )
    waiter.start()
    clock.advance(59)
    waiter.join(0.2)
    assert waiter.is_alive()  # 59 of 60 s: still waiting
    clock.advance(1)
    waiter.join(10)
    assert results == [False]  # timed out on the fake clock


def test_fake_wait_returns_at_once_when_the_event_is_set_or_the_condition_notified() -> None:
    clock = FakeClock()
    event = threading.Event()
    threading.Timer(0.05, event.set).start()
    assert clock.wait(event, 3600) is True
    cond = threading.Condition()
    flag: list[int] = []

    def notify() -> None:
        with cond:
            flag.append(1)
            cond.notify_all()

    with cond:
        threading.Timer(0.05, notify).start()
        while not flag:
            clock.wait(cond, 3600)
    assert flag == [1]


def test_fake_sleep_returns_once_another_thread_advanced_the_clock() -> None:
    clock = FakeClock()
    sleeper = threading.Thread(target=clock.sleep, args=(10,), daemon=True)
    sleeper.start()
    sleeper.join(0.1)
    assert sleeper.is_alive()
    clock.advance(10)
    sleeper.join(10)
    assert not sleeper.is_alive()


def test_as_clock_takes_clocks_and_the_callables_earlier_releases_took() -> None:
    clock = FakeClock()
    assert as_clock(clock, "X") is clock
    assert as_clock(None, "X") is SYSTEM_CLOCK
    epoch = as_clock(lambda: 1_000.5, "X")
    assert epoch.now() == datetime.fromtimestamp(1_000.5, timezone.utc)
    assert epoch.monotonic() == 1_000.5
    moment = datetime(2031, 2, 3, tzinfo=timezone(timedelta(hours=2)))
    aware = as_clock(lambda: moment, "X")
    assert aware.now() == moment and aware.now().utcoffset() == timedelta(0)
    with pytest.raises(InvalidParameterError, match="naive datetime"):
        as_clock(datetime.now, "Monitor")
    with pytest.raises(InvalidParameterError, match="returned str"):
        as_clock(lambda: "today", "Monitor")
    with pytest.raises(InvalidParameterError, match="'clock' parameter of Monitor"):
        as_clock(42, "Monitor")


def test_the_registry_stamps_versions_and_history_with_its_clock(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2029, 3, 1, tzinfo=timezone.utc))
    reg = ModelRegistry(tmp_path / "reg", clock=clock)
    X = np.random.default_rng(0).normal(size=(50, 2))
    v = reg.register("m", LogisticRegression().fit(X, X[:, 0] > 0), sample=X)
    clock.advance(3600)
    reg.promote("m", 1, reason="first")
    assert v.created_at == datetime(2029, 3, 1, tzinfo=timezone.utc)
    assert [e.time for e in reg.history("m")] == [
        datetime(2029, 3, 1, tzinfo=timezone.utc),
        datetime(2029, 3, 1, 1, tzinfo=timezone.utc),
    ]


def test_monitor_windows_alerts_and_reports_read_the_monitor_clock() -> None:
    clock = FakeClock(datetime(2029, 3, 1, tzinfo=timezone.utc))
    mon = Monitor(window=timedelta(minutes=10), buckets=10, thresholds={"accuracy": 0.9},
                  min_samples=10, clock=clock)  # fmt: skip
    y = np.array([0, 1] * 10)
    mon.log_predictions(np.zeros((20, 1)), y, y_true=1 - y)
    alert = mon.alerts[-1]
    assert alert.at == clock.now()
    clock.advance(11 * 60)  # the rows leave the 10-minute window
    assert mon.metrics()["n_labelled"] == 0
    assert mon.report().to_dict()["generated_at"] == clock.now().isoformat()
