"""HybridRouter: rules, handles, flushing by size and time, close, asyncio, threads, errors."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from modeldeploy.deployers.batch import BatchDeployer
from modeldeploy.deployers.online import OnlineDeployer
from modeldeploy.exceptions import (
    DeploymentError,
    InvalidParameterError,
    PredictionTimeoutError,
    SchemaError,
)
from modeldeploy.registry.signature import Signature
from modeldeploy.routing import (
    HybridRouter,
    Request,
    RouteHandle,
    by_deadline,
    by_meta,
    by_size,
    first_of,
)
from modeldeploy.testing import FakeClock

X, y = make_classification(n_samples=3_000, n_features=5, n_informative=3, random_state=0)
SIG = Signature.infer(X)
TREE = DecisionTreeClassifier(max_depth=6, random_state=0).fit(X, y)
LR = LogisticRegression(max_iter=500).fit(X, y)


def online(model: Any = TREE) -> OnlineDeployer:
    return OnlineDeployer(model, signature=SIG, fast_path="off")


def batch(model: Any = TREE, **kwargs: Any) -> BatchDeployer:
    kwargs.setdefault("flush_interval_s", None)  # only size, flush() and close() score
    return BatchDeployer(model, chunk_size=500, n_jobs=1, **kwargs)


@pytest.fixture
def pair() -> Iterator[tuple[OnlineDeployer, BatchDeployer]]:
    dep, job = online(), batch()
    yield dep, job
    dep.close()
    job.close()


def make_router(pair: tuple[OnlineDeployer, BatchDeployer], **kwargs: Any) -> HybridRouter:
    return HybridRouter(online=pair[0], batch=pair[1], **kwargs)


# ---------------------------------------------------------------------- rules


def test_default_rule_sends_up_to_1000_rows_online_and_more_to_batch(pair: Any) -> None:
    with make_router(pair) as router:
        small = router.submit(X[:1_000])
        big = router.submit(X[:1_001])
        assert small.path == "online" and small.done()
        assert big.path == "batch" and not big.done()
        assert router.which(X[:1]) == "online"
    np.testing.assert_array_equal(small.result(), TREE.predict(X[:1_000]))
    np.testing.assert_array_equal(big.result(), TREE.predict(X[:1_001]))
    stats = router.stats()
    assert (stats.online.requests, stats.online.rows) == (1, 1_000)
    assert (stats.batch.requests, stats.batch.rows) == (1, 1_001)


def test_by_meta_rule_routes_on_the_key_and_leaves_missing_keys_to_the_default(pair: Any) -> None:
    with make_router(pair, route=by_meta("urgent", online_if=True)) as router:
        urgent = router.submit(X[:3], meta={"urgent": True})
        later = router.submit(X[:3], meta={"urgent": False})
        unsaid_small = router.submit(X[:3])
        unsaid_big = router.submit(X[:1_500])
        assert [h.path for h in (urgent, later, unsaid_small, unsaid_big)] == [
            "online",
            "batch",
            "online",
            "batch",
        ]
        assert router.predict(X[7], meta={"urgent": True}).tolist() == TREE.predict(X[7:8]).tolist()


def test_by_deadline_rule_sends_tight_deadlines_online(pair: Any) -> None:
    rule = by_deadline(online_within=timedelta(seconds=5))
    with make_router(pair, route=rule) as router:
        soon = datetime.now(timezone.utc) + timedelta(seconds=2)
        later = datetime.now(timezone.utc) + timedelta(hours=1)
        paths = [
            router.submit(X[:2], deadline=d).path
            for d in (soon, later, 1.0, 600.0, timedelta(seconds=3), datetime.now())
        ]
        assert paths == ["online", "batch", "online", "batch", "online", "online"]
        assert router.which(X[:2], deadline=None) == "online"  # undecided: default (size)
        assert router.which(X[:2_000], deadline=None) == "batch"


def test_by_size_rule_uses_its_own_limit(pair: Any) -> None:
    with make_router(pair, route=by_size(max_online_rows=10)) as router:
        assert router.submit(X[:10]).path == "online"
        handle = router.submit(X[:11])
        assert handle.path == "batch"
    np.testing.assert_array_equal(handle.result(), TREE.predict(X[:11]))


def test_lambda_rule_from_the_issue(pair: Any) -> None:
    route = lambda req: "online" if req.meta.get("urgent") else "batch"  # noqa: E731
    with make_router(pair, route=route) as router:
        assert router.submit(X[0], meta={"urgent": True}).path == "online"
        assert router.submit(X[0]).path == "batch"
        seen: list[Request] = []
        router._rule = lambda req: seen.append(req)  # records what rules see
        router.submit(X[:4], meta={"tenant": "a"}, ids=[1, 2, 3, 4], key="u1", deadline=9.0)
    req = seen[0]
    assert req.n_rows == 4 and req.meta == {"tenant": "a"} and req.ids == [1, 2, 3, 4]
    assert req.key == "u1" and req.deadline == 9.0
    assert isinstance(req.rows, np.ndarray) and req.rows.shape == (4, 5)


def test_first_of_and_lists_take_the_first_rule_that_decides(pair: Any) -> None:
    rules = [by_meta("urgent"), by_deadline(online_within=1.0), by_size(max_online_rows=5)]
    with make_router(pair, route=rules) as router:
        assert router.which(X[:100], meta={"urgent": True}) == "online"
        assert router.which(X[:1], meta={"urgent": False}) == "batch"
        assert router.which(X[:100], deadline=0.5) == "online"
        assert router.which(X[:1], deadline=60.0) == "batch"
        assert router.which(X[:5]) == "online"
        assert router.which(X[:6]) == "batch"
    undecided = first_of(by_meta("urgent"), default="batch")
    assert undecided(Request(rows=None)) == "batch"
    assert repr(undecided) == "first_of(by_meta('urgent', online_if=True), default='batch')"


def test_a_rule_returning_something_else_fails_only_that_request(pair: Any) -> None:
    route = lambda req: "fast" if req.meta.get("bad") else "online"  # noqa: E731
    with make_router(pair, route=route) as router:
        with pytest.raises(InvalidParameterError, match="returned 'fast'"):
            router.predict(X[0], meta={"bad": True})
        assert router.predict(X[0]).tolist() == TREE.predict(X[:1]).tolist()
        assert router.stats().rejected == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"route": "online"}, "'route' parameter"),
        ({"flush_rows": 0}, "'flush_rows' parameter"),
        ({"flush_seconds": -1}, "'flush_seconds' parameter"),
    ],
)
def test_bad_arguments_are_refused(pair: Any, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        make_router(pair, **kwargs)


def test_deployers_without_the_needed_methods_are_refused(pair: Any) -> None:
    with pytest.raises(InvalidParameterError, match="'online' parameter"):
        HybridRouter(online=object(), batch=pair[1])  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="'batch' parameter"):
        HybridRouter(online=pair[0], batch=pair[0])
    with pytest.raises(InvalidParameterError, match="online_within"):
        by_deadline(online_within=-1)
    with pytest.raises(InvalidParameterError, match="first_of"):
        first_of("online")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- flushing


def test_batch_handles_resolve_when_queued_rows_reach_flush_rows(pair: Any) -> None:
    with make_router(pair, route=lambda req: "batch", flush_rows=10) as router:
        assert pair[1].flush_rows == 10_000  # the router flushes; the batch deployer is unchanged
        first = [router.submit(X[3 * i : 3 * i + 3]) for i in range(3)]  # 9 rows: not yet
        assert not any(h.done() for h in first)
        assert router.stats().pending_requests == 3 and router.stats().pending_rows == 9
        last = router.submit(X[9:12])  # 12 rows >= 10: the scheduler scores them
        for i, handle in enumerate([*first, last]):
            np.testing.assert_array_equal(
                handle.result(timeout=30), TREE.predict(X[3 * i : 3 * i + 3])
            )
        assert router.stats().pending_requests == 0


def test_batch_handles_resolve_when_the_oldest_waited_flush_seconds() -> None:
    clock = FakeClock()
    dep, job = online(), batch(clock=clock)
    with HybridRouter(dep, job, route=lambda req: "batch", flush_seconds=20, clock=clock) as router:
        assert job.flush_interval_s is None  # unchanged: the router times the flush
        handles = [router.submit(X[i]) for i in range(5)]
        clock.advance(19)
        time.sleep(0.2)
        assert not handles[0].done()  # 19 s on the router's clock: not yet
        clock.advance(1)
        got = np.concatenate([h.result(timeout=30) for h in handles])  # nobody flushes by hand
    np.testing.assert_array_equal(got, TREE.predict(X[:5]))
    dep.close()
    job.close()


def test_flush_seconds_holds_even_when_the_batch_scheduler_started_before_the_router() -> None:
    clock = FakeClock()
    dep, job = online(), batch()  # job: no time threshold of its own, on the real clock
    job.submit(X[:1])
    job.flush()  # its scheduler thread now runs, with no interval
    router = HybridRouter(dep, job, route=lambda req: "batch", flush_seconds=30, clock=clock)
    first = router.submit(X[:3])
    clock.advance(30)  # the router's timer flushes: the batch scheduler's own would wait 30 s
    np.testing.assert_array_equal(first.result(timeout=10), TREE.predict(X[:3]))
    second = router.submit(X[3:6])  # the timer waits again after going idle
    clock.advance(30)
    np.testing.assert_array_equal(second.result(timeout=10), TREE.predict(X[3:6]))
    router.close()
    assert router._timer is not None and not router._timer.is_alive()
    dep.close()
    job.close()


def test_close_scores_every_queued_request_and_refuses_new_ones(pair: Any) -> None:
    router = make_router(pair, route=lambda req: "batch")
    handles = [router.submit(X[10 * i : 10 * i + 10]) for i in range(20)]
    assert not any(h.done() for h in handles)
    router.close()
    assert all(h.done() for h in handles)
    got = np.concatenate([h.result(timeout=0) for h in handles])
    np.testing.assert_array_equal(got, TREE.predict(X[:200]))
    assert router.closed and router.stats().pending_requests == 0
    with pytest.raises(DeploymentError, match="closed"):
        router.submit(X[0])
    router.close()  # twice is fine
    extra = pair[1].submit(X[:1])  # the deployers are the caller's: still open
    pair[1].flush()
    assert extra.result(timeout=0).tolist() == TREE.predict(X[:1]).tolist()


def test_close_deployers_closes_both(pair: Any) -> None:
    router = make_router(pair, route=lambda req: "batch", close_deployers=True)
    handle = router.submit(X[:3])
    router.close()
    assert handle.result(timeout=0).tolist() == TREE.predict(X[:3]).tolist()
    assert pair[0].closed
    with pytest.raises(DeploymentError, match="closed"):
        pair[1].submit(X[:1])


def test_predict_on_the_batch_path_waits_and_can_time_out(pair: Any) -> None:
    with make_router(pair, route=lambda req: "batch") as router:
        with pytest.raises(PredictionTimeoutError, match="stays queued"):
            router.predict(X[:4], timeout=0.05)
        assert router.stats().pending_requests == 1
        assert router.flush() == 4
        assert router.stats().pending_requests == 0
        waiter = threading.Timer(0.1, router.flush)
        waiter.start()
        np.testing.assert_array_equal(router.predict(X[4:8]), TREE.predict(X[4:8]))
        waiter.join()


# ---------------------------------------------------------------------- handles and asyncio


def test_handles_are_future_like(pair: Any) -> None:
    with make_router(pair, route=by_meta("now")) as router:
        handle = router.submit(X[:3], meta={"now": False})
        assert (
            isinstance(handle, RouteHandle)
            and repr(handle) == "RouteHandle(batch, 3 rows, pending)"
        )
        called: list[RouteHandle] = []
        handle.add_done_callback(called.append)
        with pytest.raises(PredictionTimeoutError):
            handle.exception(timeout=0.01)
        router.flush()
        assert handle.exception() is None and called == [handle]
        assert "done" in handle._repr_html_()
        now = router.submit(X[:3], meta={"now": True})
        assert now.done() and now.path == "online"
        late: list[RouteHandle] = []
        now.add_done_callback(late.append)  # already resolved: called at once
        assert late == [now]


def test_awaiting_handles_does_not_block_the_event_loop(pair: Any) -> None:
    async def main(router: HybridRouter) -> None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        tick = asyncio.create_task(ticker())
        handle = router.submit(X[:50], meta={"now": False})
        waiting = asyncio.create_task(router.apredict(X[50:60], meta={"now": False}))
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, lambda: threading.Thread(target=router.flush).start())
        got = await handle
        before = ticks
        np.testing.assert_array_equal(got, TREE.predict(X[:50]))
        np.testing.assert_array_equal(await waiting, TREE.predict(X[50:60]))
        assert before >= 3  # the loop kept running while the handle was pending
        online_now = await router.apredict(X[:7], meta={"now": True})
        np.testing.assert_array_equal(online_now, TREE.predict(X[:7]))
        with pytest.raises(PredictionTimeoutError):
            await router.apredict(X[:2], meta={"now": False}, timeout=0.01)
        tick.cancel()

    with make_router(pair, route=by_meta("now")) as router:
        asyncio.run(main(router))
    stats = router.stats()
    assert stats.online.requests == 1 and stats.batch.requests == 3


def test_return_version_names_what_answered_on_either_path(pair: Any) -> None:
    dep = pair[0]
    dep.set_canary(OnlineDeployer(LR, signature=SIG, name="lr"), 1.0)  # every online request
    canary = next(v.label for v in dep.stats().versions if v.role == "canary")
    assert canary.startswith("lr") and canary != dep.version

    async def main(router: HybridRouter) -> list[tuple[np.ndarray, str | None]]:
        coros = [router.apredict(X[i], meta={"now": True}, return_version=True)
                 for i in range(20)]  # fmt: skip
        return list(await asyncio.gather(*coros))

    with make_router(pair, route=by_meta("now")) as router:
        out, version = router.predict(X[:4], meta={"now": True}, return_version=True)
        assert version == canary and out.tolist() == LR.predict(X[:4]).tolist()
        got = asyncio.run(main(router))
        assert {v for _, v in got} == {canary}
        assert [int(o[0]) for o, _ in got] == LR.predict(X[:20]).tolist()
        waiting = router.submit(X[:2], meta={"now": False})
        router.flush()
        assert waiting.result().tolist() == TREE.predict(X[:2]).tolist()
        router.submit(X[:3], meta={"now": False})
        threading.Timer(0.05, router.flush).start()
        out, version = router.predict(X[:3], meta={"now": False}, return_version=True,
                                      timeout=10)  # fmt: skip
        assert version == router._versions()["batch"]
        assert out.tolist() == TREE.predict(X[:3]).tolist()
        assert isinstance(router.predict(X[:2], meta={"now": True}), np.ndarray)
    stats = router.stats()
    assert (stats.online.requests, stats.online.rows, stats.online.errors) == (22, 4 + 20 + 2, 0)


# ---------------------------------------------------------------------- threads and errors


def test_many_threads_mixing_predict_and_submit_get_their_own_answers() -> None:
    dep, job = online(), batch()
    router = HybridRouter(dep, job, route=by_size(max_online_rows=8), flush_rows=200)
    n_threads, per_thread = 16, 60
    rng = np.random.default_rng(1)
    plans = [
        [(int(s), int(n), bool(p)) for s, n, p in zip(
            rng.integers(0, 2_900, per_thread), rng.integers(1, 20, per_thread),
            rng.integers(0, 2, per_thread), strict=True,
        )]
        for _ in range(n_threads)
    ]  # fmt: skip
    failures: list[str] = []
    start = threading.Barrier(n_threads)

    def work(k: int) -> None:
        start.wait()
        handles = []
        for s, n, use_predict in plans[k]:
            rows = X[s : s + n]
            if use_predict:
                got = router.predict(rows, timeout=60)
                if not np.array_equal(got, TREE.predict(rows)):
                    failures.append(f"predict {k} {s} {n}")
            else:
                handles.append((router.submit(rows), rows))
        for handle, rows in handles:
            if not np.array_equal(handle.result(timeout=60), TREE.predict(rows)):
                failures.append(f"submit {k}")

    # predict on the batch path waits for a flush: a timer keeps the queue moving.
    stop = threading.Event()
    flusher = threading.Thread(
        target=lambda: [router.flush() for _ in iter(lambda: stop.wait(0.05), True)]
    )
    flusher.start()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    stop.set()
    flusher.join()
    router.close()
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    stats = router.stats()
    all_rows = sum(n for plan in plans for _, n, _ in plan)
    assert stats.requests == n_threads * per_thread and stats.rows == all_rows
    small = sum(1 for plan in plans for _, n, _ in plan if n <= 8)
    assert stats.online.requests == small
    assert stats.pending_requests == 0 and stats.online.errors == stats.batch.errors == 0
    dep.close()
    job.close()


def test_close_while_threads_submit_leaves_no_handle_unresolved(pair: Any) -> None:
    router = make_router(pair, route=lambda req: "batch", flush_rows=50)
    handles: list[tuple[RouteHandle, int]] = []
    refused = []
    start = threading.Barrier(9)

    def work(k: int) -> None:
        start.wait()
        for i in range(200):
            s = (k * 200 + i) % 2_990
            try:
                handles.append((router.submit(X[s : s + 3]), s))
            except DeploymentError:
                refused.append(k)
                return

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    start.wait()
    router.close()
    for t in threads:
        t.join(60)
    assert all(h.done() for h, _ in handles)  # accepted before close: scored by close
    for h, s in handles:
        np.testing.assert_array_equal(h.result(timeout=0), TREE.predict(X[s : s + 3]))
    assert len(handles) + len(refused) >= 8 and router.stats().pending_requests == 0


def test_a_bad_request_raises_schema_error_in_its_caller_only(pair: Any) -> None:
    with make_router(pair, route=by_meta("now")) as router:
        good = [router.submit(X[i : i + 2], meta={"now": False}) for i in range(4)]
        with pytest.raises(SchemaError):
            router.submit(X[:2, :3], meta={"now": False})  # 3 columns instead of 5
        with pytest.raises(SchemaError):
            router.predict({"x0": "a lot"}, meta={"now": True})
        with pytest.raises(SchemaError, match="empty"):
            router.submit(X[:0])
        also_good = router.predict(X[:2], meta={"now": True})
        router.flush()
        for i, handle in enumerate(good):
            np.testing.assert_array_equal(handle.result(timeout=0), TREE.predict(X[i : i + 2]))
        np.testing.assert_array_equal(also_good, TREE.predict(X[:2]))
        stats = router.stats()
        assert stats.rejected == 3 and stats.batch.errors == 0
        assert stats.batch.requests == 4 and stats.online.requests == 1


class _Picky:
    """Fails on any batch holding a value above 100 (a model that breaks on some input)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, X: Any) -> Any:
        if np.asarray(X).max() > 100:
            raise RuntimeError("value out of range")
        return self.model.predict(X)


def test_a_failing_batch_resolves_its_handles_with_the_error() -> None:
    dep = online()
    job = batch(_Picky(TREE))
    with HybridRouter(dep, job, route=lambda req: "batch") as router:
        handles = [router.submit(X[i : i + 3]) for i in range(3)]
        poison = X[:2].copy()
        poison[1, 0] = 1e6
        bad = router.submit(poison)
        router.flush()
        for i, handle in enumerate(handles):  # scored one by one after the shared batch failed
            np.testing.assert_array_equal(handle.result(timeout=0), TREE.predict(X[i : i + 3]))
        with pytest.raises(DeploymentError, match="value out of range"):
            bad.result(timeout=0)
        assert isinstance(bad.exception(), DeploymentError)
        assert repr(bad) == "RouteHandle(batch, 2 rows, failed: DeploymentError)"
        stats = router.stats()
        assert (stats.batch.requests, stats.batch.errors) == (3, 1)
    job.close()
    always = batch(_Picky(TREE))
    with HybridRouter(dep, always, route=lambda req: "batch") as router:
        doomed = [router.submit(poison) for _ in range(3)]
    assert all(isinstance(h.exception(timeout=0), DeploymentError) for h in doomed)
    assert router.stats().batch.errors == 3
    always.close()
    dep.close()


def test_stats_count_traffic_queue_and_render(pair: Any) -> None:
    with make_router(pair, route=by_size(max_online_rows=3), flush_rows=1_000) as router:
        for i in range(5):
            router.predict(X[i : i + 2])
        queued = [router.submit(X[:10]) for _ in range(2)]
        stats = router.stats()
        assert (stats.online.requests, stats.online.rows, stats.online.errors) == (5, 10, 0)
        assert (stats.batch.requests, stats.pending_requests, stats.pending_rows) == (0, 2, 20)
        assert stats.online.latency_samples == 5 and (stats.online.latency_s["p50"] or 0) > 0
        assert stats.versions == {"online": pair[0].version, "batch": None}
        assert stats.settings["flush_rows"] == 1_000
        router.flush()
        assert all(h.done() for h in queued)
        stats = router.stats()
        assert (stats.batch.requests, stats.batch.rows, stats.pending_rows) == (2, 20, 0)
        assert stats.to_dict()["batch"]["rows"] == 20
        assert "online [" in repr(stats) and "<table>" in stats._repr_html_()
        assert repr(router).startswith("HybridRouter(online=") and "<table>" in router._repr_html_()


def test_proba_batch_path_makes_the_online_path_answer_probabilities() -> None:
    dep = OnlineDeployer(LR, signature=SIG, fast_path="off")
    job = batch(LR, method="predict_proba")
    with HybridRouter(dep, job, route=by_size(max_online_rows=1)) as router:
        now = router.predict(X[:1])
        later = router.submit(X[:4])
    np.testing.assert_allclose(now, LR.predict_proba(X[:1]))
    np.testing.assert_allclose(later.result(), LR.predict_proba(X[:4]))
    dep.close()
    job.close()


# ---------------------------------------------------------------------- versions


def test_both_paths_must_serve_one_registry_version(registry: Any, tmp_path: Path) -> None:
    v1 = registry.register("churn", TREE, sample=X)
    v2 = registry.register("churn", LR, sample=X)
    dep = OnlineDeployer(v1, fast_path="off")
    same, other = BatchDeployer(v1, n_jobs=1), BatchDeployer(v2, n_jobs=1)
    with HybridRouter(dep, same) as router:
        assert router.stats().versions == {"online": "churn:1", "batch": "churn:1"}
        np.testing.assert_array_equal(router.predict(X[:5]), TREE.predict(X[:5]))
    with pytest.raises(
        InvalidParameterError, match="churn:1 but the batch deployer scores churn:2"
    ):
        HybridRouter(dep, other)
    with HybridRouter(dep, other, allow_version_mismatch=True) as router:
        assert router.stats().batch.role == "churn:2"
    for d in (dep, same, other):
        d.close()


def test_batch_routed_requests_carry_their_ids_to_the_monitor() -> None:
    from modeldeploy.testing import RecordingMonitor

    rng = np.random.default_rng(9)
    X = rng.normal(size=(40, 3))
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    monitor = RecordingMonitor()
    online = OnlineDeployer(model, signature=Signature.infer(X))
    batch = BatchDeployer(model, n_jobs=1, monitor=monitor)
    with HybridRouter(online=online, batch=batch, route=lambda req: "batch") as router:
        handle = router.submit(X[:3], ids=["x", "y", "z"])
        router.flush()
        assert handle.result(timeout=5).shape == (3,)
    batch.close()
    online.close()
    assert [list(b["ids"]) for b in monitor.batches] == [["x", "y", "z"]]


# ---------------------------------------------------------------------- contracts


class _ListQueue:
    """A BatchQueue that is not a BatchDeployer: scores on flush with a plain model."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Any, Any]] = []
        self.flushes = 0

    def submit(self, X: Any, /, *, ids: Any = None) -> Any:
        import concurrent.futures as cf

        fut: cf.Future[np.ndarray] = cf.Future()
        self.waiting.append((fut, np.atleast_2d(X)))
        return fut

    def flush(self) -> int:
        self.flushes += 1
        rows = 0
        for fut, X_ in self.waiting:
            fut.set_result(TREE.predict(X_))
            rows += len(X_)
        self.waiting = []
        return rows

    def close(self) -> None:
        self.flush()


def test_any_batch_queue_works_and_the_router_flushes_it_on_its_own_size_threshold() -> None:
    queue = _ListQueue()
    dep = online()
    with HybridRouter(dep, queue, route=lambda req: "batch", flush_rows=6) as router:
        first = router.submit(X[:4])
        time.sleep(0.05)
        assert not first.done() and queue.flushes == 0
        second = router.submit(X[4:8])  # 8 rows >= 6: the router's thread flushes the queue
        np.testing.assert_array_equal(first.result(timeout=10), TREE.predict(X[:4]))
        np.testing.assert_array_equal(second.result(timeout=10), TREE.predict(X[4:8]))
        assert router.stats().settings["flush_rows"] == 6
    dep.close()


def test_a_version_label_with_a_trailing_newline_is_not_a_registry_version() -> None:
    from modeldeploy.routing.router import _REF

    assert _REF.fullmatch("churn:3") and not _REF.fullmatch("churn:3\n")
