from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from modeldeploy.deployers.online._batcher import (
    BatcherClosedError,
    BatchTimeoutError,
    CallPool,
    MicroBatcher,
    failed_on_own_rows,
)
from modeldeploy.exceptions import DeploymentError, InvalidParameterError
from modeldeploy.testing import run_concurrently


class RecordingModel:
    """Doubles the first column; remembers the size of every call; optionally slow."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self.lock:
            self.calls.append(batch.shape[0])
        if self.delay_s:
            time.sleep(self.delay_s)
        if np.any(batch[:, 0] == -1):
            raise ValueError("row with -1 is poison")
        return batch[:, 0] * 2


def test_lone_caller_runs_at_once_even_with_a_long_wait_setting() -> None:
    model = RecordingModel()
    batcher = MicroBatcher(model, max_batch_size=64, max_wait_ms=600_000)
    done = threading.Event()

    def call() -> None:
        for _ in range(5):
            batcher.submit(np.array([[1.0, 0.0]]))
        done.set()

    threading.Thread(target=call, daemon=True).start()
    # Had the caller waited for company, it would wait ten minutes per call.
    assert done.wait(10)
    assert model.calls == [1] * 5


def test_concurrent_callers_share_model_calls_and_get_their_own_rows() -> None:
    model = RecordingModel(delay_s=0.02)
    batcher = MicroBatcher(model, max_batch_size=64, max_wait_ms=5)
    results = run_concurrently(32, lambda k: batcher.submit(np.array([[float(k), 1.0]])))
    for k, got in enumerate(results):
        np.testing.assert_array_equal(got, [2.0 * k])
    assert sum(model.calls) == 32
    assert len(model.calls) < 32
    assert max(model.calls) > 1
    assert batcher.batches == len(model.calls)
    assert batcher.rows == 32


def test_multi_row_requests_come_back_whole_and_in_order() -> None:
    model = RecordingModel(delay_s=0.005)
    batcher = MicroBatcher(model, max_batch_size=16, max_wait_ms=2)

    def call(k: int) -> np.ndarray:
        rows = np.column_stack([np.arange(k, k + 1 + k % 4, dtype=float), np.zeros(1 + k % 4)])
        return batcher.submit(rows)  # type: ignore[no-any-return]

    results = run_concurrently(24, call)
    for k, got in enumerate(results):
        np.testing.assert_array_equal(got, 2.0 * np.arange(k, k + 1 + k % 4))


def test_batches_never_exceed_max_batch_size_which_changes_at_runtime() -> None:
    model = RecordingModel(delay_s=0.01)
    batcher = MicroBatcher(model, max_batch_size=8, max_wait_ms=5)
    run_concurrently(24, lambda k: batcher.submit(np.array([[1.0, 0.0]])))
    assert max(model.calls) <= 8
    batcher.configure(max_batch_size=3, max_wait_ms=1)
    assert (batcher.max_batch_size, batcher.max_wait_ms) == (3, 1.0)
    model.calls.clear()
    run_concurrently(24, lambda k: batcher.submit(np.array([[1.0, 0.0]])))
    assert max(model.calls) <= 3
    assert sum(model.calls) == 24


def test_request_larger_than_max_batch_size_runs_whole() -> None:
    model = RecordingModel()
    batcher = MicroBatcher(model, max_batch_size=4)
    out = batcher.submit(np.ones((10, 2)))
    assert out.shape == (10,)
    assert model.calls == [10]


def test_a_failing_request_does_not_fail_the_others_in_its_batch() -> None:
    model = RecordingModel(delay_s=0.01)
    batcher = MicroBatcher(model, max_batch_size=64, max_wait_ms=5)
    poison = 7

    def call(k: int) -> np.ndarray:
        return batcher.submit(np.array([[-1.0 if k == poison else float(k), 0.0]]))  # type: ignore[no-any-return]

    results = run_concurrently(24, call)
    for k, got in enumerate(results):
        if k == poison:
            assert isinstance(got, ValueError)
        else:
            np.testing.assert_array_equal(got, [2.0 * k])


def test_timeout_stops_the_wait_for_a_hung_model() -> None:
    release = threading.Event()

    def hangs(batch: np.ndarray) -> np.ndarray:
        release.wait(30)
        return batch[:, 0]

    batcher = MicroBatcher(hangs, timeout_ms=50)
    t0 = time.perf_counter()
    with pytest.raises(BatchTimeoutError):
        batcher.submit(np.ones((1, 2)))
    assert time.perf_counter() - t0 < 10
    release.set()
    batcher.close()


def test_call_pool_refuses_once_every_thread_hangs() -> None:
    release = threading.Event()
    pool = CallPool(max_threads=2)

    def hangs(batch: Any) -> Any:
        release.wait(30)
        return batch

    for _ in range(2):
        with pytest.raises(BatchTimeoutError):
            pool.call(hangs, 1, 0.01)
    with pytest.raises(DeploymentError, match="still running past their timeout"):
        pool.call(hangs, 1, 0.01)
    release.set()
    pool.close()


def test_model_answering_the_wrong_number_of_rows_fails_alone_or_batched() -> None:
    batcher = MicroBatcher(lambda batch: np.zeros(1), max_batch_size=64, max_wait_ms=5)
    results = run_concurrently(6, lambda k: batcher.submit(np.ones((2, 2))))
    # Two rows with one answer is an error, never a silently misaligned answer.
    assert all(isinstance(r, DeploymentError) for r in results)
    assert "one answer per row" in str(results[0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_batch_size": 0}, "max_batch_size"), ({"max_wait_ms": -1}, "max_wait_ms")],
)
def test_invalid_settings_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        MicroBatcher(lambda batch: batch, **kwargs)


def test_an_interrupted_leader_passes_the_lead_on() -> None:
    # What a KeyboardInterrupt in a waiting caller triggers: its request leaves the queue and
    # the lead goes to the next queued request, so no one is left waiting for a leader.
    model = RecordingModel()
    batcher = MicroBatcher(model, max_batch_size=8, max_wait_ms=1)
    batcher._busy = True
    leader = batcher_request(batcher, 1.0)
    follower = batcher_request(batcher, 2.0)
    leader.leader = True
    batcher._abandon(leader)
    assert list(batcher._queue) == [follower] and batcher._queued_rows == 1
    assert follower.leader and follower.done.acquire(blocking=False)
    assert batcher._lead(follower).tolist() == [4.0]
    assert not batcher._busy and not batcher._queue
    # A lone interrupted leader leaves the batcher idle, and the next caller runs at once.
    batcher._busy = True
    alone = batcher_request(batcher, 3.0)
    alone.leader = True
    batcher._abandon(alone)
    assert not batcher._busy and not batcher._queue
    assert batcher.submit(np.array([[5.0, 0.0]])).tolist() == [10.0]


def batcher_request(batcher: MicroBatcher, value: float) -> Any:
    from modeldeploy.deployers.online._batcher import _Request

    req = _Request(np.array([[value, 0.0]]), 1, time.perf_counter())
    batcher._queue.append(req)
    batcher._queued_rows += 1
    return req


def test_every_caller_gets_its_own_rows_under_random_load_and_settings() -> None:
    rng_model = np.random.default_rng(0)
    lock = threading.Lock()

    def echo(batch: np.ndarray) -> np.ndarray:
        with lock:
            delay = float(rng_model.uniform(0, 0.002))
        time.sleep(delay)
        return np.array(batch[:, 0])

    batcher = MicroBatcher(echo, max_batch_size=16, max_wait_ms=1)
    stop = threading.Event()

    def reconfigure() -> None:
        rng = np.random.default_rng(1)
        while not stop.is_set():
            batcher.configure(
                max_batch_size=int(rng.integers(1, 40)), max_wait_ms=float(rng.uniform(0, 3))
            )
            time.sleep(0.003)

    def call(k: int) -> list[str]:
        rng = np.random.default_rng(100 + k)
        wrong = []
        for i in range(30):
            n = int(rng.integers(1, 6))
            ids = k * 1_000_000 + i * 10 + np.arange(n, dtype=float)
            got = batcher.submit(np.column_stack([ids, np.zeros(n)]))
            if not np.array_equal(got, ids):
                wrong.append(f"caller {k} request {i}: {got} != {ids}")
        return wrong

    tuner = threading.Thread(target=reconfigure)
    tuner.start()
    results = run_concurrently(32, call)
    stop.set()
    tuner.join()
    assert [w for r in results for w in r] == []
    assert batcher.rows == sum(
        int(np.random.default_rng(100 + k).integers(1, 6, size=30).sum()) for k in range(32)
    )


def test_after_a_burst_a_lone_caller_waits_once_then_never() -> None:
    class CountingBatcher(MicroBatcher):
        led = 0

        def _lead(self, req: Any) -> Any:
            self.led += 1
            return super()._lead(req)

    model = RecordingModel(delay_s=0.01)
    batcher = CountingBatcher(model, max_batch_size=64, max_wait_ms=20)
    run_concurrently(16, lambda k: batcher.submit(np.array([[float(k), 0.0]])))
    assert batcher._want > 1  # it now expects company
    model.delay_s = 0.0
    batcher.led = 0
    t0 = time.perf_counter()
    batcher.submit(np.array([[1.0, 0.0]]))
    # The first lone call waited out max_wait_ms for company that never came ...
    assert time.perf_counter() - t0 >= 0.02
    assert batcher.led == 1 and batcher._want == 1
    for _ in range(3):
        batcher.submit(np.array([[1.0, 0.0]]))
    # ... and the next ones ran at once, without queueing or waiting.
    assert batcher.led == 1


def _queue_behind_a_held_call(batcher: MicroBatcher, hold: threading.Event, n: int) -> list[Any]:
    """Start one caller whose model call waits for ``hold``, then ``n`` callers that queue
    behind it; return the results list their threads fill in (call order)."""
    results: list[Any] = [None] * (n + 1)

    def call(k: int) -> None:
        try:
            results[k] = batcher.submit(np.array([[float(k), 0.0]]))
        except Exception as exc:  # handed back to the test
            results[k] = exc

    first = threading.Thread(target=call, args=(0,), daemon=True)
    first.start()
    deadline = time.perf_counter() + 5
    while not batcher._busy and time.perf_counter() < deadline:
        time.sleep(0.001)
    time.sleep(0.01)  # let the first caller enter the model
    for k in range(1, n + 1):
        threading.Thread(target=call, args=(k,), daemon=True).start()
    while batcher._queued_rows < n and time.perf_counter() < deadline:
        time.sleep(0.001)
    assert batcher._queued_rows == n
    return results


def test_output_that_cannot_be_sliced_fails_every_caller_and_none_gets_none() -> None:
    hold = threading.Event()

    def dict_model(batch: np.ndarray) -> Any:
        hold.wait(5)
        return dict.fromkeys(range(batch.shape[0]), 0.0)  # len() works, slicing does not

    batcher = MicroBatcher(dict_model, max_batch_size=64, max_wait_ms=5, name="churn:3")
    results = _queue_behind_a_held_call(batcher, hold, 6)
    hold.set()
    deadline = time.perf_counter() + 5
    while any(r is None for r in results) and time.perf_counter() < deadline:
        time.sleep(0.001)
    for got in results:
        assert isinstance(got, DeploymentError), got
        assert "churn:3 returned a dict" in str(got) and "one answer per row" in str(got)


def test_close_fails_queued_requests_at_once_while_the_model_call_hangs() -> None:
    hold = threading.Event()

    def hangs(batch: np.ndarray) -> np.ndarray:
        hold.wait(10)
        return batch[:, 0] * 2

    batcher = MicroBatcher(hangs, max_batch_size=64, max_wait_ms=5)
    results = _queue_behind_a_held_call(batcher, hold, 4)
    t0 = time.perf_counter()
    batcher.close()
    while any(r is None for r in results[1:]) and time.perf_counter() - t0 < 5:
        time.sleep(0.001)
    assert time.perf_counter() - t0 < 2
    assert all(isinstance(r, BatcherClosedError) for r in results[1:])
    assert "was closed before this request reached the model" in str(results[1])
    with pytest.raises(BatcherClosedError):
        batcher.submit(np.ones((1, 2)))
    hold.set()  # the call already running still answers its caller
    while results[0] is None and time.perf_counter() - t0 < 5:
        time.sleep(0.001)
    assert results[0].tolist() == [0.0]


def test_a_request_failing_alone_in_an_answered_batch_is_blamed_on_its_rows() -> None:
    hold = threading.Event()
    model = RecordingModel()

    def held(batch: np.ndarray) -> np.ndarray:
        hold.wait(5)
        return model(batch)

    batcher = MicroBatcher(held, max_batch_size=64, max_wait_ms=5)
    results: list[Any] = [None] * 3

    def call(k: int, value: float) -> None:
        try:
            results[k] = batcher.submit(np.array([[value, 0.0]]))
        except Exception as exc:  # handed back to the test
            results[k] = exc

    threading.Thread(target=call, args=(0, 1.0), daemon=True).start()
    deadline = time.perf_counter() + 5
    while not batcher._busy and time.perf_counter() < deadline:
        time.sleep(0.001)
    time.sleep(0.01)
    threading.Thread(target=call, args=(1, -1.0), daemon=True).start()  # poison
    threading.Thread(target=call, args=(2, 3.0), daemon=True).start()
    while batcher._queued_rows < 2 and time.perf_counter() < deadline:
        time.sleep(0.001)
    hold.set()
    while any(r is None for r in results) and time.perf_counter() < deadline:
        time.sleep(0.001)
    assert isinstance(results[1], ValueError) and failed_on_own_rows(results[1])
    assert results[2].tolist() == [6.0]
    # A request that fails alone, with no batch-mate answered, is not blamed on its rows.
    with pytest.raises(ValueError, match="poison") as info:
        batcher.submit(np.array([[-1.0, 0.0]]))
    assert not failed_on_own_rows(info.value)


def test_timed_out_calls_are_counted_as_abandoned() -> None:
    release = threading.Event()
    pool = CallPool(max_threads=2)
    with pytest.raises(BatchTimeoutError):
        pool.call(lambda batch: release.wait(5), 1, 0.01)
    assert pool.abandoned == 1
    release.set()
    pool.close()


def test_a_recorder_counts_each_answered_request_once_lone_or_queued() -> None:
    from modeldeploy.deployers._stats import LatencyRecorder

    recorder = LatencyRecorder("demo", "primary")

    def slow_first_column(batch: np.ndarray) -> np.ndarray:
        time.sleep(0.002)
        return batch[:, 0]

    batcher = MicroBatcher(slow_first_column, max_batch_size=64, max_wait_ms=1, recorder=recorder)
    for k in range(5):  # lone callers: the caller's own thread runs the model
        assert batcher.submit(np.array([[float(k), 0.0]]), time.perf_counter()).tolist() == [k]
    answers = run_concurrently(12, lambda k: batcher.submit(np.array([[float(k), 1.0]] * 2)))
    assert [a.tolist() for a in answers] == [[float(k)] * 2 for k in range(12)]
    snap = recorder.snapshot()
    assert (snap.requests, snap.rows) == (17, 5 + 24)
    assert snap.latency_samples == 17 and (snap.latency_s["p50"] or 0) > 0
    assert batcher.batches < 17  # the concurrent callers shared calls


def test_a_failed_lone_call_is_not_recorded_and_frees_the_batcher() -> None:
    from modeldeploy.deployers._stats import LatencyRecorder

    recorder = LatencyRecorder("demo", "primary")
    batcher = MicroBatcher(lambda batch: batch[:1, 0], recorder=recorder)
    with pytest.raises(DeploymentError, match="1 answers"):
        batcher.submit(np.zeros((3, 2)))
    assert recorder.snapshot().requests == 0 and not batcher._busy
    assert batcher.submit(np.zeros((1, 2))).tolist() == [0.0]
    assert recorder.snapshot().requests == 1


def test_the_caller_completing_a_batch_runs_it_and_the_waiting_leader_wakes_with_its_answer() -> (
    None
):
    ran_on: list[str] = []

    def fn(batch: np.ndarray) -> np.ndarray:
        ran_on.append(threading.current_thread().name)
        return batch[:, 0] * 2

    batcher = MicroBatcher(fn, max_batch_size=8, max_wait_ms=5000)
    batcher._want = 3  # as after calls shared by three callers
    answers: dict[str, Any] = {}

    def call(name: str, value: float) -> None:
        answers[name] = batcher.submit(np.array([[value, 0.0]]))

    def wait_for(condition: Any) -> None:
        deadline = time.perf_counter() + 10
        while not condition():
            assert time.perf_counter() < deadline
            time.sleep(0.001)

    threads = {name: threading.Thread(target=call, args=(name, v), name=name)
               for name, v in (("leader", 1.0), ("second", 2.0), ("third", 3.0))}  # fmt: skip
    t0 = time.perf_counter()
    threads["leader"].start()
    wait_for(lambda: batcher._gathering is not None)  # waiting up to 5 s for two more
    threads["second"].start()
    wait_for(lambda: len(batcher._queue) == 2)
    threads["third"].start()
    for t in threads.values():
        t.join(10)
    assert time.perf_counter() - t0 < 4  # nobody waited for the 5 s deadline
    assert ran_on == ["third"]  # one model call, in the thread that completed the batch
    assert {k: v.tolist() for k, v in answers.items()} == {
        "leader": [2.0], "second": [4.0], "third": [6.0]
    }  # fmt: skip
    assert (batcher.batches, batcher.rows) == (1, 3)
    assert not batcher._busy and batcher._gathering is None
    # The next lone caller still runs: nothing was left holding the batcher.
    batcher._want = 1
    assert batcher.submit(np.array([[5.0, 0.0]])).tolist() == [10.0]


def test_closing_wakes_a_gathering_leader_at_once() -> None:
    batcher = MicroBatcher(lambda b: b[:, 0], max_batch_size=8, max_wait_ms=5000)
    batcher._want = 4
    got: list[Any] = []

    def call() -> None:
        try:
            got.append(batcher.submit(np.array([[1.0, 0.0]])))
        except BatcherClosedError as exc:
            got.append(exc)

    t = threading.Thread(target=call)
    t0 = time.perf_counter()
    t.start()
    deadline = time.perf_counter() + 10
    while batcher._gathering is None:
        assert time.perf_counter() < deadline
        time.sleep(0.001)
    batcher.close()
    t.join(10)
    assert time.perf_counter() - t0 < 4
    assert len(got) == 1 and isinstance(got[0], BatcherClosedError)
