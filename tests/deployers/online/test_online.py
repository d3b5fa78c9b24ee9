from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, Literal

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from modeldeploy.checks import check_deployer
from modeldeploy.deployers.online import OnlineDeployer
from modeldeploy.exceptions import DeploymentError, InvalidParameterError, SchemaError
from modeldeploy.registry.signature import Signature
from modeldeploy.testing import RecordingMonitor, run_concurrently

X, y = make_classification(n_samples=400, n_features=6, n_informative=4, random_state=0)
SIG = Signature.infer(X)
LR = LogisticRegression(max_iter=500).fit(X, y)


def test_predict_matches_the_model_for_rows_batches_and_dicts() -> None:
    dep = OnlineDeployer(LR, signature=SIG, name="lr")
    with dep:
        np.testing.assert_array_equal(dep.predict(X), LR.predict(X))
        np.testing.assert_array_equal(dep.predict(X[3]), LR.predict(X[3:4]))
        as_dict = dict(zip(SIG.names, X[5].tolist(), strict=True))
        np.testing.assert_array_equal(dep.predict(as_dict), LR.predict(X[5:6]))
        np.testing.assert_allclose(dep.predict_proba(X[:7]), LR.predict_proba(X[:7]))
        assert dep.version == "lr"


@pytest.mark.parametrize("fast_path", ["auto", "off"])
def test_swap_under_load_drops_no_request(fast_path: Literal["auto", "off"]) -> None:
    # Ten regression "versions", each 100 apart, so every answer names the version it came from.
    target = X @ np.arange(1.0, 7.0)
    versions = [LinearRegression().fit(X, target + 100.0 * k) for k in range(10)]
    expected = np.stack([m.predict(X) for m in versions])  # (version, row)
    dep = OnlineDeployer(
        versions[0], signature=SIG, max_batch_size=64, max_wait_ms=1, fast_path=fast_path
    )
    stop = threading.Event()

    def caller(k: int) -> list[str]:
        problems = []
        rng = np.random.default_rng(k)
        calls = 0
        while not stop.is_set() or calls < 5:
            idx = rng.choice(X.shape[0], size=int(rng.integers(1, 4)), replace=False)
            got = dep.predict(X[idx])  # raises on a dropped request: collected by run_threads
            calls += 1
            matches = [v for v in range(10) if np.allclose(got, expected[v, idx], atol=1e-6)]
            if len(matches) != 1:
                problems.append(f"rows {idx.tolist()} got {got} matching versions {matches}")
        return problems

    def swapper() -> None:
        for s in range(50):
            dep.swap(versions[(s + 1) % 10])
        stop.set()

    swapping = threading.Thread(target=swapper)
    swapping.start()
    results = run_concurrently(64, caller)
    swapping.join(60)
    assert all(isinstance(r, list) for r in results), [
        r for r in results if not isinstance(r, list)
    ]
    assert [p for r in results for p in r] == []
    stats = dep.stats()
    assert sum(v.errors for v in stats.versions) == 0
    assert dep.version == "LinearRegression-51"  # the initial model and 50 swaps
    dep.close()


@pytest.mark.parametrize("fast_path", ["auto", "off"])
def test_malformed_request_fails_only_its_caller(fast_path: Literal["auto", "off"]) -> None:
    dep = OnlineDeployer(LR, signature=SIG, max_wait_ms=5, fast_path=fast_path)
    bad_caller = 13

    def call(k: int) -> np.ndarray:
        if k == bad_caller:
            return dep.predict(np.hstack([X[k : k + 1], X[k : k + 1, :2]]))  # 8 columns, not 6
        return dep.predict(X[k : k + 1])

    results = run_concurrently(48, call)
    for k, got in enumerate(results):
        if k == bad_caller:
            assert isinstance(got, SchemaError)
            assert "Expected 6 features" in str(got)
        else:
            np.testing.assert_array_equal(got, LR.predict(X[k : k + 1]))
    stats = dep.stats().primary
    assert (stats.rejected, stats.requests, stats.errors) == (1, 47, 0)


def test_batching_settings_change_at_runtime() -> None:
    dep = OnlineDeployer(LR, signature=SIG, max_batch_size=32, max_wait_ms=1)
    dep.configure(max_batch_size=4, max_wait_ms=3)
    assert dep.stats().settings["max_batch_size"] == 4
    batcher = dep._route.primary.batchers["predict"]
    assert (batcher.max_batch_size, batcher.max_wait_ms) == (4, 3.0)
    results = run_concurrently(16, lambda k: dep.predict(X[k : k + 1]))
    for k, got in enumerate(results):
        np.testing.assert_array_equal(got, LR.predict(X[k : k + 1]))
    with pytest.raises(InvalidParameterError, match="max_wait_ms"):
        dep.configure(max_wait_ms=-1)


def test_stats_count_requests_and_give_ordered_percentiles() -> None:
    dep = OnlineDeployer(LR, signature=SIG, name="lr")
    for i in range(50):
        dep.predict(X[i : i + 2])
    stats = dep.stats()
    primary = stats["lr"]
    assert (primary.requests, primary.rows, primary.errors) == (50, 100, 0)
    lat = primary.latency_s
    assert lat["p50"] is not None and lat["p95"] is not None and lat["p99"] is not None
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] < 5.0  # seconds
    assert stats.batches == 50 and stats.mean_batch_size == 2.0
    assert f"p50 {lat['p50'] * 1e3:.3g} ms" in repr(stats)  # displayed in ms
    assert "lr [primary]: 50 requests" in repr(stats)
    assert "<table>" in stats._repr_html_() and "lr" in dep._repr_html_()
    assert stats.to_dict()["versions"][0]["requests"] == 50
    with pytest.raises(KeyError, match="No version 'nope'"):
        stats["nope"]


def test_stats_before_traffic_are_none_and_dump_to_valid_json() -> None:
    with OnlineDeployer(LR, signature=SIG, name="lr", fallback=0) as dep:
        stats = dep.stats()
        assert stats.mean_batch_size is None
        assert stats.primary.error_rate is None and stats.primary.agreement is None
        assert dict(stats.primary.latency_s) == dict.fromkeys(("mean", "p50", "p95", "p99"))
        text = json.dumps(stats.to_dict(), allow_nan=False)  # raises on NaN
        assert json.loads(text)["versions"][0]["latency_s"]["p99"] is None
        assert "p50 - ms" in repr(stats) and "<td>-</td>" in stats._repr_html_()
        dep.predict(X[:3])
        after = json.loads(json.dumps(dep.stats().to_dict(), allow_nan=False))
        assert after["versions"][0]["latency_s"]["p99"] > 0
        assert dep.stats().primary.error_rate == 0.0


def test_latency_memory_stays_bounded() -> None:
    dep = OnlineDeployer(LR, signature=SIG)
    recorder = dep._route.primary.recorder
    recorder_window = recorder.window
    for i in range(recorder_window + 500):
        dep.predict(X[i % 400])
    assert len(recorder._buf) == recorder_window
    stats = dep.stats().primary
    assert stats.latency_samples == recorder_window
    assert stats.requests == recorder_window + 500


def test_bare_model_takes_its_signature_from_the_first_request() -> None:
    dep = OnlineDeployer(LR)
    assert dep.signature is None
    np.testing.assert_array_equal(dep.predict(X[0]), LR.predict(X[:1]))
    signature: Signature | None = dep.signature
    assert signature is not None and signature.n_features == 6
    with pytest.raises(SchemaError, match="Expected 6 features"):
        dep.predict(X[0, :4])


def test_monitor_gets_each_request_off_the_hot_path_with_ids() -> None:
    gate = threading.Event()
    monitor = RecordingMonitor(gate=gate)
    dep = OnlineDeployer(LR, signature=SIG, monitor=monitor, name="lr")
    # The monitor blocks until the gate opens: predictions must not wait for it.
    for i in range(5):
        dep.predict(X[i : i + 2], ids=[f"r{i}a", f"r{i}b"])
    proba = dep.predict_proba(X[10:11], ids="r10")
    assert monitor.batches == []
    gate.set()
    dep.close()  # drains the monitor queue
    assert [b["ids"] for b in monitor.batches[:5]] == [[f"r{i}a", f"r{i}b"] for i in range(5)]
    assert all(b["version"] == "lr" and b["latency"] > 0 for b in monitor.batches)
    np.testing.assert_array_equal(monitor.batches[0]["y"], LR.predict(X[0:2]))
    last = monitor.batches[5]
    np.testing.assert_array_equal(last["proba"], proba)
    np.testing.assert_array_equal(last["y"], LR.predict(X[10:11]))


def test_failing_monitor_never_fails_a_prediction(caplog: pytest.LogCaptureFixture) -> None:
    monitor = RecordingMonitor(fail=True)
    dep = OnlineDeployer(LR, signature=SIG, monitor=monitor)
    for i in range(10):
        np.testing.assert_array_equal(dep.predict(X[i]), LR.predict(X[i : i + 1]))
    dep.close()
    assert "the monitor failed" in caplog.text


def test_ids_must_match_the_rows() -> None:
    dep = OnlineDeployer(LR, signature=SIG)
    with pytest.raises(InvalidParameterError, match="one id per row"):
        dep.predict(X[:3], ids=[1, 2])


def test_apredict_runs_off_the_event_loop_and_agrees_with_predict() -> None:
    class Tracing:
        def __init__(self) -> None:
            self.threads: set[int] = set()

        def predict(self, batch: np.ndarray) -> np.ndarray:
            self.threads.add(threading.get_ident())
            return np.asarray(LR.predict(batch))

        def predict_proba(self, batch: np.ndarray) -> np.ndarray:
            return np.asarray(LR.predict_proba(batch))

    model = Tracing()
    dep = OnlineDeployer(model, signature=SIG, warm=False)

    async def main() -> tuple[list[np.ndarray], np.ndarray]:
        answers = await asyncio.gather(*(dep.apredict(X[i : i + 1]) for i in range(20)))
        return list(answers), await dep.apredict_proba(X[:3])

    answers, proba = asyncio.run(main())
    loop_thread = threading.get_ident()
    assert loop_thread not in model.threads
    np.testing.assert_array_equal(np.concatenate(answers), LR.predict(X[:20]))
    np.testing.assert_allclose(proba, LR.predict_proba(X[:3]))
    dep.close()


def test_predict_proba_of_a_model_without_it_is_a_deployment_error() -> None:
    regressor = LinearRegression().fit(X, X[:, 0])
    dep = OnlineDeployer(regressor, signature=SIG, name="reg")
    with pytest.raises(DeploymentError, match="reg has no predict_proba"):
        dep.predict_proba(X[:1])


def test_closed_deployer_refuses_requests_and_repr_says_so() -> None:
    dep = OnlineDeployer(LR, signature=SIG, name="lr", fallback=0)
    assert (
        repr(dep) == "OnlineDeployer(primary='lr', fallback='0', max_batch_size=64, max_wait_ms=2)"
    )
    dep.close()
    dep.close()
    assert repr(dep).endswith("closed)")
    with pytest.raises(DeploymentError, match="closed"):
        dep.predict(X[0])
    with pytest.raises(DeploymentError, match="closed"):
        asyncio.run(dep.apredict(X[0]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_wait_ms": -0.5}, "max_wait_ms"),
        ({"timeout_ms": 0}, "timeout_ms"),
        ({"breaker_threshold": 0}, "breaker_threshold"),
        ({"monitor": object()}, "monitor"),
        ({"signature": "x0"}, "signature"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        OnlineDeployer(LR, **kwargs)


def test_not_a_model_is_refused() -> None:
    with pytest.raises(InvalidParameterError, match="ModelVersion or an object with predict"):
        OnlineDeployer(42)


@pytest.mark.parametrize(("timeout_ms", "fast_path"), [(None, "auto"), (None, "off"), (5e3, "off")])
def test_online_deployer_passes_the_deployer_checks(
    timeout_ms: float | None, fast_path: Literal["auto", "off"]
) -> None:
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y)
    dep = OnlineDeployer(tree, signature=SIG, timeout_ms=timeout_ms, fast_path=fast_path)
    assert check_deployer(dep, X[:40], threads=16) == [
        "answers", "threads", "validation", "stats", "async", "close",
    ]  # fmt: skip


def test_fast_path_serves_by_default_and_answers_exactly_like_the_model() -> None:
    dep = OnlineDeployer(LR, signature=SIG)
    report = dep.fast_path_report()
    assert report is not None and report.accepted and report.served_by == "numpy-linear"
    np.testing.assert_array_equal(dep.predict(X), LR.predict(X))
    np.testing.assert_allclose(dep.predict_proba(X[:9]), LR.predict_proba(X[:9]), atol=1e-12)
    assert OnlineDeployer(LR, signature=SIG, fast_path="off").fast_path_report() is None
    check_deployer(dep, X[:30])
    with pytest.raises(InvalidParameterError, match="fast_path"):
        OnlineDeployer(LR, signature=SIG, fast_path="always")  # type: ignore[arg-type]


def test_empty_request_is_a_schema_error() -> None:
    dep = OnlineDeployer(LR, signature=SIG)
    with pytest.raises(SchemaError, match="at least one row"):
        dep.predict(X[:0])
    assert dep.stats().primary.rejected == 1


def test_tree_fast_path_and_swaps_recompile() -> None:
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y)
    dep = OnlineDeployer(LR, signature=SIG)
    dep.swap(tree)
    report = dep.fast_path_report()
    assert report is not None and report.model.startswith("DecisionTreeClassifier")
    np.testing.assert_array_equal(dep.predict(X), tree.predict(X))
    np.testing.assert_allclose(dep.predict_proba(X), tree.predict_proba(X), atol=1e-9)


def test_a_model_without_a_fast_path_is_served_by_itself() -> None:
    class Custom:
        def predict(self, batch: np.ndarray) -> np.ndarray:
            return np.asarray(LR.predict(batch))

    dep = OnlineDeployer(Custom(), signature=SIG)
    report = dep.fast_path_report()
    assert report is not None and report.served_by == "native"
    np.testing.assert_array_equal(dep.predict(X[:5]), LR.predict(X[:5]))
    with pytest.raises(DeploymentError):
        OnlineDeployer(Custom(), signature=SIG, fast_path="require")
