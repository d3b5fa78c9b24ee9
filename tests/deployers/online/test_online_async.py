"""OnlineDeployer from asyncio: batching on the event loop, several loops and threads at once,
cancellation, and everything the sync path guarantees (validation, timeouts, fallback, canary,
shadow, stats, monitor)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any, Literal

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LinearRegression, LogisticRegression

from modeldeploy.deployers.online import OnlineDeployer
from modeldeploy.exceptions import DeploymentError, PredictionTimeoutError, SchemaError
from modeldeploy.registry.signature import Signature
from modeldeploy.testing import RecordingMonitor, run_concurrently

X, y = make_classification(n_samples=600, n_features=6, n_informative=4, random_state=3)
SIG = Signature.infer(X)
LR = LogisticRegression(max_iter=500).fit(X, y)
# A regressor whose answer identifies the row it was asked about (and the version).
TARGET = X @ np.arange(1.0, 7.0)
REG = LinearRegression().fit(X, TARGET)
EXPECTED = REG.predict(X)


class Slow:
    """A model whose every call takes ``seconds``; records the threads it ran on."""

    def __init__(self, seconds: float, offset: float = 0.0) -> None:
        self.seconds = seconds
        self.offset = offset
        self.threads: set[str] = set()
        self.calls = 0
        self.rows: list[int] = []

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.threads.add(threading.current_thread().name)
        self.calls += 1
        self.rows.append(batch.shape[0])
        time.sleep(self.seconds)
        return np.asarray(REG.predict(batch)) + self.offset


class Poisoned:
    """Fails on any batch holding a row whose first feature is exactly 1234.0."""

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if (batch[:, 0] == 1234.0).any():
            raise ValueError("row with feature 0 = 1234")
        return np.asarray(REG.predict(batch))


def _run(coro: Any, timeout: float = 60.0) -> Any:
    async def guarded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(guarded())


async def _gather(coros: Any) -> list[Any]:
    return list(await asyncio.gather(*coros))


def _run_list(coro: Any, timeout: float = 60.0) -> list[Any]:
    return list(_run(coro, timeout))


@pytest.mark.parametrize("fast_path", ["auto", "off"])
def test_many_coroutines_get_their_own_answers_in_shared_batches(
    fast_path: Literal["auto", "off"],
) -> None:
    dep = OnlineDeployer(REG, signature=SIG, fast_path=fast_path, max_batch_size=32)

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(*(dep.apredict(X[i % 600]) for i in range(500)))

    with dep:
        got = _run(main())
        stats = dep.stats()
    np.testing.assert_allclose(np.concatenate(got), EXPECTED[np.arange(500) % 600], rtol=1e-9)
    assert stats.primary.requests == 500 and stats.primary.rows == 500
    assert stats.primary.latency_samples == 500
    # 500 coroutines ready together: full batches of max_batch_size, not one call per request.
    assert stats.batches <= 500 // 32 + 2
    assert stats.batched_rows == 500


def test_a_cheap_fast_path_runs_on_the_loop_and_a_slow_model_on_one_helper_thread() -> None:
    fast = OnlineDeployer(REG, signature=SIG)  # a verified numpy-linear fast path
    slow_model = Slow(0.002)
    slow = OnlineDeployer(slow_model, signature=SIG, warm=False)

    async def main(dep: OnlineDeployer) -> None:
        for _ in range(5):
            await asyncio.gather(*(dep.apredict(X[i]) for i in range(40)))

    with fast, slow:
        assert fast.fast_path_report().accepted
        _run(main(fast))
        _run(main(slow))
        # The first batch measures the fast path on a helper thread; the rest ran on the loop.
        assert fast._batching.hops._threads <= 1
        assert fast.stats().batches <= 10
        hop_threads = [n for n in slow_model.threads if n.startswith("modeldeploy-hop")]
        assert slow_model.threads and len(hop_threads) == len(slow_model.threads)
        assert max(slow_model.rows) == 40  # the 40 coroutines of a round share one call


def test_a_call_that_must_be_timed_out_never_runs_on_the_loop() -> None:
    dep = OnlineDeployer(REG, signature=SIG, timeout_ms=2000)
    with dep:
        assert dep.fast_path_report().accepted
        batcher = dep._route.primary.batchers["predict"]
        assert batcher.inline_max_s is None
        got = _run(_gather(dep.apredict(X[i]) for i in range(30)))
        np.testing.assert_allclose(np.concatenate(got), EXPECTED[:30])
        assert dep._batching.pool is not None and dep._batching.pool._threads >= 1


def test_inline_max_ms_zero_sends_every_batch_to_a_helper_thread() -> None:
    with OnlineDeployer(REG, signature=SIG, inline_max_ms=0) as dep:
        assert dep._route.primary.batchers["predict"].inline_max_s is None
        for _ in range(3):
            _run(_gather(dep.apredict(X[i]) for i in range(10)))
        assert dep._batching.hops._threads >= 1


def test_the_loop_keeps_running_while_a_slow_batch_is_scored() -> None:
    model = Slow(0.2)
    dep = OnlineDeployer(model, signature=SIG, warm=False)
    ticks: list[float] = []

    async def main() -> np.ndarray:
        async def ticker() -> None:
            while True:
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.01)

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        out = await dep.apredict(X[:3])
        tick.cancel()
        return out

    with dep:
        out = _run(main())
    np.testing.assert_allclose(out, EXPECTED[:3])
    assert len(ticks) >= 5  # ticked during the 200 ms call


def test_cancelled_coroutines_never_take_or_lose_another_callers_answer() -> None:
    model = Slow(0.003)
    dep = OnlineDeployer(model, signature=SIG, warm=False, max_batch_size=16)
    rng = random.Random(5)

    async def main() -> tuple[int, int, list[str]]:
        problems: list[str] = []
        tasks = {}
        for round_ in range(20):
            for i in range(48):
                k = (round_ * 48 + i) % 600
                tasks[asyncio.create_task(dep.apredict(X[k]))] = k
            await asyncio.sleep(0)
            # Cancel some while queued, others while their batch is on a helper thread.
            for task in rng.sample(sorted(tasks, key=id), 12):
                task.cancel()
            await asyncio.sleep(rng.choice([0, 0.001, 0.004]))
        done = await asyncio.gather(*tasks, return_exceptions=True)
        cancelled = answered = 0
        for (_task, k), got in zip(tasks.items(), done, strict=True):
            if isinstance(got, asyncio.CancelledError):
                cancelled += 1
            elif isinstance(got, BaseException):
                problems.append(f"row {k}: {got!r}")
            else:
                answered += 1
                if not np.allclose(got, EXPECTED[k : k + 1]):
                    problems.append(f"row {k} got {got}, expected {EXPECTED[k]}")
        return cancelled, answered, problems

    with dep:
        cancelled, answered, problems = _run(main())
        # Nothing is left waiting: the deployer still answers at once.
        np.testing.assert_allclose(_run(dep.apredict(X[7])), EXPECTED[7:8])
    assert problems == []
    assert answered + cancelled == 20 * 48 and cancelled >= 100 and answered >= 500


def test_several_loops_in_threads_and_plain_threads_at_the_same_time() -> None:
    dep = OnlineDeployer(REG, signature=SIG, max_batch_size=32)
    per_loop = 150

    def loop_caller(k: int) -> list[str]:
        async def main() -> list[str]:
            idx = [(k * 37 + i) % 600 for i in range(per_loop)]
            got = await asyncio.gather(*(dep.apredict(X[i], return_version=True) for i in idx))
            problems = []
            for i, (out, version) in zip(idx, got, strict=True):
                if not np.allclose(out, EXPECTED[i : i + 1]) or version != dep.version:
                    problems.append(f"loop {k} row {i}: {out} from {version}")
            return problems

        return _run_list(main())

    def thread_caller(k: int) -> list[str]:
        problems = []
        for j in range(per_loop // 3):
            i = (k * 11 + j) % 600
            out = dep.predict(X[i : i + 2])
            if not np.allclose(out, EXPECTED[i : i + 2]):
                problems.append(f"thread {k} rows {i}: {out}")
        return problems

    def either(k: int) -> list[str]:
        return loop_caller(k) if k % 2 == 0 else thread_caller(k)

    with dep:
        results = run_concurrently(12, either)
        stats = dep.stats()
    assert all(isinstance(r, list) for r in results), results
    assert [p for r in results for p in r] == []
    assert stats.primary.requests == 6 * per_loop + 6 * (per_loop // 3)
    assert stats.primary.errors == 0


def test_a_bad_request_fails_only_its_coroutine() -> None:
    dep = OnlineDeployer(REG, signature=SIG)

    async def main() -> list[Any]:
        reqs: list[Any] = [X[i] for i in range(20)]
        reqs[7] = np.ones(5)  # wrong number of features
        reqs[12] = [np.nan] * 6  # NaN where the signature forbids it
        return list(await asyncio.gather(*(dep.apredict(r) for r in reqs), return_exceptions=True))

    with dep:
        got = _run(main())
        stats = dep.stats().primary
    assert isinstance(got[7], SchemaError) and isinstance(got[12], SchemaError)
    for i in set(range(20)) - {7, 12}:
        np.testing.assert_allclose(got[i], EXPECTED[i : i + 1])
    assert stats.rejected == 2 and stats.requests == 18


def test_a_model_failing_on_one_requests_rows_fails_only_that_request() -> None:
    dep = OnlineDeployer(Poisoned(), signature=SIG, warm=False, breaker_threshold=1)
    bad = X[3].copy()
    bad[0] = 1234.0

    async def main() -> list[Any]:
        reqs = [X[i] for i in range(16)]
        reqs[5] = bad
        return list(await asyncio.gather(*(dep.apredict(r) for r in reqs), return_exceptions=True))

    with dep:
        got = _run(main())
        again = _run(dep.apredict(X[20]))  # the breaker did not open on one request's rows
    assert isinstance(got[5], DeploymentError) and "1234" in str(got[5])
    for i in set(range(16)) - {5}:
        np.testing.assert_allclose(got[i], EXPECTED[i : i + 1])
    np.testing.assert_allclose(again, EXPECTED[20:21])


def test_timeouts_and_fallback_on_the_async_path() -> None:
    hung = Slow(0.5)
    dep = OnlineDeployer(hung, signature=SIG, warm=False, timeout_ms=50)
    with_fallback = OnlineDeployer(Slow(0.5), signature=SIG, warm=False, timeout_ms=50,
                                   fallback=-1.0, name="slow")  # fmt: skip

    async def main() -> tuple[list[Any], list[Any], float]:
        t0 = time.perf_counter()
        raised = await asyncio.gather(
            *(dep.apredict(X[i]) for i in range(4)), return_exceptions=True
        )
        answered = await asyncio.gather(
            *(with_fallback.apredict(X[i], return_version=True) for i in range(4))
        )
        return raised, answered, time.perf_counter() - t0

    with dep, with_fallback:
        raised, answered, took = _run(main())
        stats = dep.stats().primary
        fb_stats = with_fallback.stats()
    assert all(isinstance(r, PredictionTimeoutError) for r in raised), raised
    assert took < 0.45  # neither gather waited for the 500 ms calls
    assert [v for _, v in answered] == ["fallback -1.0"] * 4
    assert all(out.tolist() == [-1.0] for out, _ in answered)
    assert stats.timeouts == 4 and stats.errors == 4
    assert fb_stats["slow"].fallbacks == 4 and fb_stats["fallback -1.0"].requests == 4


def test_a_failing_model_is_answered_by_a_fallback_model_off_the_loop() -> None:
    class Broken:
        def predict(self, batch: np.ndarray) -> np.ndarray:
            raise ArithmeticError("model exploded")

    dep = OnlineDeployer(Broken(), signature=SIG, warm=False, fallback=LR,
                         breaker_threshold=1000, name="broken")  # fmt: skip
    with dep:
        got = _run(_gather(dep.apredict(X[i], return_version=True) for i in range(8)))
    assert [v for _, v in got] == ["fallback LogisticRegression"] * 8
    np.testing.assert_array_equal(np.concatenate([o for o, _ in got]), LR.predict(X[:8]))


def test_canary_shadow_stats_and_monitor_hold_on_the_async_path() -> None:
    primary = LinearRegression().fit(X, TARGET)
    candidate = LinearRegression().fit(X, TARGET + 1000.0)
    shadow = LinearRegression().fit(X, TARGET)
    monitor = RecordingMonitor()
    dep = OnlineDeployer(primary, signature=SIG, name="v1", monitor=monitor)
    dep.set_canary(candidate, 0.3)
    dep.set_shadow(shadow, 1.0)
    keys = [f"user-{i % 50}" for i in range(300)]

    async def main() -> list[tuple[np.ndarray, str]]:
        return await asyncio.gather(
            *(dep.apredict(X[i], ids=[i], key=keys[i], return_version=True) for i in range(300))
        )

    with dep:
        got = _run(main())
        assert dep.flush()
        stats = dep.stats()
    canary_label = next(v.label for v in stats.versions if v.role == "canary")
    by_key: dict[str, set[str]] = {}
    for i, (out, version) in enumerate(got):
        by_key.setdefault(keys[i], set()).add(version)
        offset = 1000.0 if version == canary_label else 0.0
        np.testing.assert_allclose(out, EXPECTED[i : i + 1] + offset, rtol=1e-9)
    assert all(len(v) == 1 for v in by_key.values())  # sticky by key
    n_canary = sum(version == canary_label for _, version in got)
    assert 0 < n_canary < 300
    assert stats["v1"].requests == 300 - n_canary and stats[canary_label].requests == n_canary
    shadow_stats = next(v for v in stats.versions if v.role == "shadow")
    # Every answer is copied to the shadow, which agrees with the primary, not the canary.
    assert shadow_stats.compared == 300 and shadow_stats.agreed == 300 - n_canary
    seen_ids = sorted(int(i) for b in monitor.batches for i in b["ids"])
    assert seen_ids == list(range(300))
    assert {b["version"] for b in monitor.batches} == {"v1", canary_label}


def test_return_version_names_the_version_after_a_swap() -> None:
    v2 = LinearRegression().fit(X, TARGET + 100.0)
    dep = OnlineDeployer(REG, signature=SIG, name="v1")
    with dep:
        out, version = dep.predict(X[:2], return_version=True)
        assert version == "v1" and np.allclose(out, EXPECTED[:2])
        dep.swap(v2)
        out, version = _run(dep.apredict(X[:2], return_version=True))
        assert version == dep.version != "v1" and np.allclose(out, EXPECTED[:2] + 100.0)
        proba, version = _run(OnlineDeployer(LR, signature=SIG, name="lr").apredict_proba(
            X[:2], return_version=True))  # fmt: skip
        assert version == "lr" and np.allclose(proba, LR.predict_proba(X[:2]))
        assert dep.predict_proba is not None
        assert isinstance(dep.predict(X[:2]), np.ndarray)


def test_closing_fails_queued_coroutines_at_once() -> None:
    model = Slow(0.3)
    dep = OnlineDeployer(model, signature=SIG, warm=False, max_batch_size=4)

    async def main() -> list[Any]:
        tasks = [asyncio.create_task(dep.apredict(X[i])) for i in range(12)]
        await asyncio.sleep(0.05)  # the first batch of 4 is in the model, 8 are queued
        dep.close()
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    got = _run(main(), timeout=10)
    answered = [g for g in got if isinstance(g, np.ndarray)]
    refused = [g for g in got if isinstance(g, DeploymentError)]
    assert len(answered) == 4 and len(refused) == 8
    assert all("closed" in str(e) for e in refused)
    with pytest.raises(DeploymentError, match="closed"):
        _run(dep.apredict(X[0]))
