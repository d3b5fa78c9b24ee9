"""A registry shared by a fleet: many processes on PostgreSQL + S3, kills, a server restart."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from modeldeploy import ModelRegistry
from modeldeploy.exceptions import OperationRefusedError, StoreUnavailableError
from modeldeploy.registry.stores import PostgresMetadataStore

pytestmark = pytest.mark.slow

PRELUDE = textwrap.dedent(
    """
    import multiprocessing, os, sys, time
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from modeldeploy import ModelRegistry
    from modeldeploy.exceptions import AliasNotFoundError, OperationRefusedError

    pg, s3 = sys.argv[1], sys.argv[2]
    reg = ModelRegistry(pg, artifacts=s3)
    X = np.random.default_rng(0).normal(size=(100, 3))


    def say(value):
        # One write(2) per line: forked workers share the pipe, and a pipe write of under
        # PIPE_BUF bytes is atomic, so their lines never interleave.
        os.write(1, f"{value}\\n".encode())


    def fork(work, workers):
        # One import, then forked workers (import time would dominate on a loaded machine).
        # The registry's connection is open before the fork: each child must open its own.
        reg.models()
        if workers == 1:
            work(0)
            return
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=work, args=(seed,)) for seed in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        sys.exit(max(p.exitcode for p in procs))
    """
)

REGISTER = PRELUDE + textwrap.dedent(
    """
    def work(seed):
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(100, 3)); y = (X[:, 0] > 0).astype(int)
        for i in range(int(sys.argv[4])):
            model = LogisticRegression(C=1 + seed + i / 100).fit(X, y)
            say(reg.register("shared", model, tags={"worker": seed, "i": i}).version)

    fork(work, int(sys.argv[3]))
    """
)

STORM = PRELUDE + textwrap.dedent(
    """
    def work(seed):
        rng = np.random.default_rng(seed)
        done = 0
        for i in range(int(sys.argv[4])):
            try:
                if rng.random() < 0.6:
                    reg.promote("storm", int(rng.integers(1, 6)), reason=f"w{seed} {i}")
                else:
                    reg.rollback("storm", reason=f"w{seed} {i}")
                done += 1
            except (OperationRefusedError, AliasNotFoundError):  # nothing to roll back to
                pass
        say(done)

    fork(work, int(sys.argv[3]))
    """
)

FOLLOW = PRELUDE + textwrap.dedent(
    """
    from modeldeploy import OnlineDeployer
    dep = OnlineDeployer.follow(reg, "served", "production", poll_s=30.0)
    last = None
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        value = int(dep.predict(X[:1])[0])
        if value != last:
            print(value, flush=True)
            last = value
        time.sleep(0.005)
    """
)


def _run(code: str, pg_url: str, s3_url: str, *args: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, pg_url, s3_url, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def fleet(pg_url: str, s3_url: str) -> Iterator[ModelRegistry]:
    reg = ModelRegistry(pg_url, artifacts=s3_url)
    yield reg
    reg.close()


@pytest.fixture
def X() -> np.ndarray:  # noqa: N802 - the scikit-learn name for a data matrix
    return np.random.default_rng(0).normal(size=(100, 3))


def test_eight_processes_get_versions_one_to_two_hundred_exactly(
    fleet: ModelRegistry, pg_url: str, s3_url: str
) -> None:
    proc = _run(REGISTER, pg_url, s3_url, 8, 25)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    claimed = sorted(int(line) for line in out.split())
    assert claimed == list(range(1, 201))  # none lost, none duplicated, no gap
    assert [v.version for v in fleet.versions("shared")] == list(range(1, 201))
    assert fleet.verify("shared") == []
    X = np.zeros((2, 3))
    for v in fleet.versions("shared")[::20]:
        assert v.load().predict(X).shape == (2,)


def test_promote_and_rollback_storms_keep_a_consistent_history(
    fleet: ModelRegistry, pg_url: str, s3_url: str, X: np.ndarray
) -> None:
    y = (X[:, 0] > 0).astype(int)
    for c in range(1, 6):
        fleet.register("storm", LogisticRegression(C=c).fit(X, y))
    proc = _run(STORM, pg_url, s3_url, 4, 40)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    succeeded = sum(int(line) for line in out.split())
    moves = [e for e in fleet.history("storm") if e.alias == "production"]
    assert len(moves) == succeeded  # every move recorded, none lost
    for before, after in itertools.pairwise(moves):
        assert after.previous == before.version  # each move starts where the last one ended
    assert fleet.aliases("storm")["production"] == moves[-1].version


def test_a_process_killed_inside_register_leaves_no_partial_version(
    fleet: ModelRegistry, pg_url: str, s3_url: str, X: np.ndarray
) -> None:
    for attempt in range(3):
        proc = _run(REGISTER, pg_url, s3_url, 1, 10_000)
        assert proc.stdout is not None and proc.stderr is not None
        for _ in range(2 + attempt):  # let it register a few, then kill it mid-loop
            proc.stdout.readline()
        time.sleep(0.007 * attempt)
        proc.send_signal(signal.SIGKILL)  # no cleanup of any kind
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    versions = [v.version for v in fleet.versions("shared")]
    assert versions == list(range(1, len(versions) + 1))  # no hole, nothing half-made
    assert fleet.verify("shared") == []
    y = (X[:, 0] > 0).astype(int)
    nxt = fleet.register("shared", LogisticRegression().fit(X, y))
    assert nxt.version == versions[-1] + 1
    assert ModelRegistry(pg_url, artifacts=s3_url).load("shared").predict(X).shape == (100,)


def _pg_ctl(*args: str) -> None:
    pg_ctl = os.environ.get("MODELDEPLOY_TEST_PG_CTL", "")
    data = os.environ.get("MODELDEPLOY_TEST_PGDATA", "")
    if not (pg_ctl and data):
        if os.environ.get("MODELDEPLOY_REQUIRE_SERVERS") == "1":
            pytest.fail("MODELDEPLOY_TEST_PG_CTL and MODELDEPLOY_TEST_PGDATA are not set")
        pytest.skip("restarting PostgreSQL needs MODELDEPLOY_TEST_PG_CTL / _PGDATA")
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [*as_pg, pg_ctl, "-D", data, "-w", "-t", "30", "-l", f"{data}/server.log", *args],
        check=True,
        capture_output=True,
    )


def test_a_postgres_restart_gives_clear_errors_loses_nothing_and_work_resumes(
    pg_url: str, s3_url: str, X: np.ndarray
) -> None:
    y = (X[:, 0] > 0).astype(int)
    store = PostgresMetadataStore(pg_url, retries=2, retry_wait_s=0.1)
    reg = ModelRegistry(metadata=store, artifacts=s3_url)
    for c in (1, 2, 3):
        reg.register("m", LogisticRegression(C=c).fit(X, y))
    reg.promote("m", 3)
    _pg_ctl("stop", "-m", "fast")
    try:
        with pytest.raises(StoreUnavailableError) as info:
            reg.register("m", LogisticRegression(C=9).fit(X, y))
        message = str(info.value)
        assert "127.0.0.1" in message and "Nothing was changed" in message
        assert "md-test-password" not in message and "password" not in info.value.server
        with pytest.raises(StoreUnavailableError):
            reg.get("m", alias="production")
    finally:
        _pg_ctl("start")
    # A server back within the retry budget is invisible to the caller. The server is down
    # before the call starts, so no commit can be in flight when it goes (that case is
    # ambiguous by nature and raises, saying so).
    restarted = threading.Event()

    def come_back() -> None:
        time.sleep(0.5)
        _pg_ctl("start")
        restarted.set()

    slow = ModelRegistry(
        metadata=PostgresMetadataStore(pg_url, retries=8, retry_wait_s=0.2), artifacts=s3_url
    )
    slow.get("m", 1)
    _pg_ctl("stop", "-m", "fast")
    returning = threading.Thread(target=come_back)
    returning.start()
    try:
        v = slow.register("m", LogisticRegression(C=5).fit(X, y))
    finally:
        returning.join()
    assert restarted.is_set()
    assert [x.version for x in reg.versions("m")] == [1, 2, 3, v.version]
    assert v.version == 4  # the attempt cut off by the outage took no number
    assert reg.get("m", alias="production").version == 3
    assert reg.verify("m") == []
    assert reg.register("m", LogisticRegression(C=6).fit(X, y)).version == 5


def test_a_follower_in_another_process_serves_a_promotion_made_elsewhere(
    fleet: ModelRegistry, pg_url: str, s3_url: str, X: np.ndarray
) -> None:
    y = (X[:, 0] > 0).astype(int)
    fleet.register("served", DummyClassifier(strategy="constant", constant=0).fit(X, y))
    fleet.register("served", DummyClassifier(strategy="constant", constant=1).fit(X, y))
    fleet.promote("served", 1)
    proc = _run(FOLLOW, pg_url, s3_url)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert proc.stdout.readline().strip() == "0"
        start = time.monotonic()
        fleet.promote("served", 2, reason="the new one")
        # poll_s is 30 s in the follower: only the notification can make this quick.
        assert proc.stdout.readline().strip() == "1"
        assert time.monotonic() - start < 5.0
    finally:
        proc.kill()
        proc.communicate(timeout=30)


def test_refused_rollbacks_change_nothing(fleet: ModelRegistry, X: np.ndarray) -> None:
    y = (X[:, 0] > 0).astype(int)
    fleet.register("m", LogisticRegression().fit(X, y))
    fleet.promote("m", 1)
    with pytest.raises(OperationRefusedError):
        fleet.rollback("m")
    assert [e.kind for e in fleet.history("m")] == ["registered", "promoted"]


def test_an_older_layout_gets_the_alias_index_on_first_use(pg_url: str, pg_dsn: str) -> None:
    import psycopg

    store = PostgresMetadataStore(pg_url)
    store.list_models()
    schema = store.schema
    store.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP INDEX "{schema}".events_alias')
        conn.execute(f'UPDATE "{schema}".schema_version SET version = 1')
    again = PostgresMetadataStore(pg_url)
    assert again.list_models() == []
    again.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        version = conn.execute(f'SELECT version FROM "{schema}".schema_version').fetchone()
        index = conn.execute(
            "SELECT 1 FROM pg_indexes WHERE schemaname = %s AND indexname = 'events_alias'",
            (schema,),
        ).fetchone()
    assert version == (2,) and index is not None
