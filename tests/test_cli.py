"""The ``modeldeploy`` command, through its real entry points (subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modeldeploy import ModelRegistry


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "reg"
    X = np.random.default_rng(0).normal(size=(100, 3))
    y = (X[:, 0] > 0).astype(int)
    reg = ModelRegistry(path)
    for c in (0.5, 1.0, 2.0):
        reg.register(
            "churn",
            LogisticRegression(C=c).fit(X, y),
            sample=X,
            metrics={"f1": 0.9},
            description=f"C={c}",
        )
    reg.promote("churn", 1, reason="first")
    reg.promote("churn", 2, reason="better")
    reg.close()
    return path


def run(
    *args: str, root: Path | None = None, env_root: Path | None = None, module: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MODELDEPLOY_REGISTRY"}
    if env_root is not None:
        env["MODELDEPLOY_REGISTRY"] = str(env_root)
    prefix = (
        [sys.executable, "-m", "modeldeploy"]
        if module
        else [str(Path(sys.executable).with_name("modeldeploy"))]
    )
    cmd = [*prefix, *(["--registry", str(root)] if root is not None else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def test_models_table_and_json(root: Path) -> None:
    out = run("models", root=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == [
        "MODEL",
        "VERSIONS",
        "LATEST",
        "ALIASES",
        "CREATED",
        "(UTC)",
    ]
    assert "churn  3" in out.stdout and "production=v2" in out.stdout
    data = json.loads(run("models", "--json", root=root).stdout)
    assert data[0]["name"] == "churn" and data[0]["aliases"] == {"production": 2}


def test_registry_from_environment_variable_and_python_m(root: Path) -> None:
    out = run("versions", "churn", "--json", env_root=root, module=True)
    assert out.returncode == 0, out.stderr
    assert [v["version"] for v in json.loads(out.stdout)] == [1, 2, 3]


def test_show_by_alias_and_version(root: Path) -> None:
    out = run("show", "churn@production", root=root)
    assert out.returncode == 0, out.stderr
    assert "churn:2" in out.stdout and "FEATURE" in out.stdout and "x2" in out.stdout
    data = json.loads(run("show", "churn:3", "--json", root=root).stdout)
    assert data["version"] == 3 and len(data["sha256"]) == 64
    assert data["signature"]["features"][0]["name"] == "x0"


def test_promote_rollback_and_history(tmp_path: Path, root: Path) -> None:
    import shutil

    mine = tmp_path / "reg"
    shutil.copytree(root, mine)
    out = run("promote", "churn", "3", "--alias", "production", "--reason", "canary ok", root=mine)
    assert (out.returncode, out.stdout.strip()) == (0, "churn@production -> v3 (was v2)")
    out = run("rollback", "churn", "--reason", "complaints", "--json", root=mine)
    assert json.loads(out.stdout) == {
        "name": "churn",
        "alias": "production",
        "version": 2,
        "previous": 3,
    }
    events = json.loads(run("history", "churn", "--json", root=mine).stdout)
    assert [(e["kind"], e["version"], e["reason"]) for e in events[-2:]] == [
        ("promoted", 3, "canary ok"),
        ("rolled_back", 2, "complaints"),
    ]
    assert "rolled_back" in run("history", "churn", root=mine).stdout


def test_verify_reports_a_corrupt_artifact_with_exit_1(tmp_path: Path, root: Path) -> None:
    import shutil

    mine = tmp_path / "reg"
    shutil.copytree(root, mine)
    ok = run("verify", root=mine)
    assert (ok.returncode, ok.stdout.strip()) == (0, "3 artifacts checked, 0 problems.")
    sha = ModelRegistry(mine).get("churn", 1).sha256
    path = mine / "artifacts" / "sha256" / sha[:2] / sha
    path.write_bytes(path.read_bytes()[:-1] + b"X")
    bad = run("verify", "churn", root=mine)
    assert bad.returncode == 1
    assert f"churn:1  sha256 mismatch  (sha256 {sha})" in bad.stdout
    assert json.loads(run("verify", "--json", root=mine).stdout)["problems"][0]["version"] == 1


def test_every_command_takes_the_same_addressing(tmp_path: Path, root: Path) -> None:
    import shutil

    mine = tmp_path / "reg"
    shutil.copytree(root, mine)
    out = run("promote", "churn:3", "--alias", "staging", root=mine)
    assert (out.returncode, out.stdout.strip()) == (0, "churn@staging -> v3"), out.stderr
    # NAME@ALIAS addresses the version the alias points at: staging's v3 goes to production.
    out = run("promote", "churn@staging", "--reason", "staging looked fine", root=mine)
    assert (out.returncode, out.stdout.strip()) == (0, "churn@production -> v3 (was v2)")
    out = run("rollback", "churn@production", "--json", root=mine)
    assert json.loads(out.stdout) == {
        "name": "churn",
        "alias": "production",
        "version": 2,
        "previous": 3,
    }
    moves = json.loads(run("history", "churn@production", "--json", root=mine).stdout)
    assert {e["alias"] for e in moves} == {"production"}
    assert [e["version"] for e in moves][-2:] == [3, 2]
    v3 = json.loads(run("history", "churn:3", "--json", root=mine).stdout)
    assert {e["version"] for e in v3} == {3} and v3[0]["kind"] == "registered"
    one = json.loads(run("versions", "churn@production", "--json", root=mine).stdout)
    assert [v["version"] for v in one] == [2]
    assert run("verify", "churn", root=mine).returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("promote", "churn"), "Which version of churn?"),
        (("promote", "churn:2", "3"), "Give the version once"),
        (("rollback", "churn:2"), "a rollback moves an alias, not a version"),
        (("rollback", "churn@production", "--alias", "staging"), "Two aliases given"),
        (("verify", "churn:1"), "Expected NAME"),
    ],
)
def test_addressing_mistakes_are_named(root: Path, args: tuple[str, ...], message: str) -> None:
    out = run(*args, root=root)
    assert out.returncode == 1, out.stdout
    assert message in out.stderr


def test_versions_json_prints_the_signature(root: Path) -> None:
    data = json.loads(run("versions", "churn", "--json", root=root).stdout)
    assert [len(v["signature"]["features"]) for v in data] == [3, 3, 3]
    assert data[0]["signature"]["features"][1]["name"] == "x1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "chrun"), "No model named 'chrun' in the registry. Did you mean 'churn'?"),
        (("show", "churn:9"), "Model 'churn' has no version 9."),
        (("show", "churn@prod"), "Model 'churn' has no alias 'prod'."),
        (("rollback", "churn", "--alias", "staging"), "has no alias 'staging'"),
    ],
)
def test_errors_are_one_line_with_exit_1(root: Path, args: tuple[str, ...], message: str) -> None:
    out = run(*args, root=root)
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("modeldeploy: error: ")
    assert message in lines[0]


def test_debug_shows_the_traceback(root: Path) -> None:
    out = run("show", "chrun", "--debug", root=root)
    assert out.returncode == 1 and "Traceback" in out.stderr


def test_missing_registry_and_usage_errors(tmp_path: Path) -> None:
    out = run("models", root=tmp_path / "nowhere")
    assert out.returncode == 1 and "No registry at" in out.stderr
    assert not (tmp_path / "nowhere").exists()  # a read command never creates a registry
    usage = run("bogus")
    assert usage.returncode == 2 and "invalid choice: 'bogus'" in usage.stderr
    assert run("promote", "churn", "two").returncode == 2


@pytest.fixture(scope="module")
def scoring(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    from sklearn.ensemble import RandomForestClassifier

    folder = tmp_path_factory.mktemp("score")
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    reg = ModelRegistry(folder / "reg")
    reg.register("rf", RandomForestClassifier(n_estimators=5, max_depth=4).fit(X, y), sample=X)
    reg.promote("rf", 1)
    np.save(folder / "X.npy", X)
    return folder, folder / "reg", X


def test_score_a_npy_file_through_the_batch_deployer(
    scoring: tuple[Path, Path, np.ndarray],
) -> None:
    folder, reg_root, X = scoring
    out = run(
        "score",
        "rf@production",
        str(folder / "X.npy"),
        "-o",
        str(folder / "p.npy"),
        "--chunk-size",
        "500",
        "--n-jobs",
        "2",
        root=reg_root,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("rf:1: scored 3,000 rows in")
    expected = ModelRegistry(reg_root).load("rf", 1).predict(X)
    np.testing.assert_array_equal(np.load(folder / "p.npy"), expected)


def test_score_parquet_with_ids_and_json_summary(scoring: tuple[Path, Path, np.ndarray]) -> None:
    import pandas as pd

    folder, reg_root, X = scoring
    df = pd.DataFrame(X, columns=[f"x{j}" for j in range(4)])
    df.insert(0, "customer_id", np.arange(len(df)) + 1000)
    df.to_parquet(folder / "X.parquet")
    out = run(
        "score",
        "rf:1",
        str(folder / "X.parquet"),
        "-o",
        str(folder / "p.parquet"),
        "--id-columns",
        "customer_id",
        "--proba",
        "--json",
        root=reg_root,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert (summary["version"], summary["rows"], summary["skipped"]) == ("rf:1", 3000, [])
    scores = pd.read_parquet(folder / "p.parquet")
    assert scores["customer_id"].tolist()[:3] == [1000, 1001, 1002]
    assert len(scores) == 3000


def test_score_reports_bad_chunks_and_missing_input(
    scoring: tuple[Path, Path, np.ndarray],
) -> None:
    folder, reg_root, X = scoring
    bad = X.copy()
    bad[1234, 2] = np.nan
    np.save(folder / "bad.npy", bad)
    out = run(
        "score",
        "rf@production",
        str(folder / "bad.npy"),
        "-o",
        str(folder / "b.npy"),
        "--chunk-size",
        "1000",
        root=reg_root,
    )
    assert out.returncode == 1
    assert "Chunk 1 (rows 1000..1999) failed validation at row 1234" in out.stderr
    skipped = run(
        "score",
        "rf@production",
        str(folder / "bad.npy"),
        "-o",
        str(folder / "b.npy"),
        "--chunk-size",
        "1000",
        "--skip-errors",
        root=reg_root,
    )
    assert skipped.returncode == 1
    assert "skipped chunk 1, rows 1000-1999" in skipped.stdout
    missing = run("score", "rf@production", str(folder / "nope.npy"), "-o", "x.npy", root=reg_root)
    assert missing.returncode == 1 and "No input file" in missing.stderr


@pytest.mark.parametrize(
    "ref", ["churn:x", "churn:", "churn:1:2", "churn:-1", "churn:\u00b2", ":1", "@prod"]
)
def test_malformed_name_version_is_a_usage_error_with_exit_2(root: Path, ref: str) -> None:
    out = run("show", ref, root=root)
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("modeldeploy: error: ")
    assert "NAME" in lines[0] and repr(ref) in lines[0]


@pytest.mark.parametrize(
    "args",
    [("bogus",), ("promote", "churn", "two"), ("show",), ("score", "churn:1", "in.npy"), ()],
)
def test_usage_errors_are_one_line_with_exit_2(args: tuple[str, ...]) -> None:
    out = run(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("modeldeploy: error: ") and "--help" in lines[0]


def test_output_closed_early_exits_quietly(root: Path) -> None:
    """``modeldeploy ... | head``: the reader goes away, the command stops without noise."""
    prefix = [str(Path(sys.executable).with_name("modeldeploy")), "--registry", str(root)]
    env = {k: v for k, v in os.environ.items() if k != "MODELDEPLOY_REGISTRY"}
    for args in (["history", "churn", "--json"], ["versions", "churn"]):
        proc = subprocess.Popen(
            [*prefix, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # like `head` exiting before the command writes
        err = proc.stderr.read().decode()
        proc.wait(timeout=60)
        proc.stderr.close()
        assert err == ""
        assert proc.returncode in (0, 1)


def test_json_never_prints_nan_or_infinity(tmp_path: Path) -> None:
    X = np.random.default_rng(0).normal(size=(50, 2))
    reg = ModelRegistry(tmp_path / "reg")
    reg.register(
        "m",
        LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)),
        sample=X,
        metrics={"r2": float("nan"), "ratio": float("inf"), "f1": 0.5},
    )
    reg.close()
    for args in (("show", "m:1", "--json"), ("versions", "m", "--json")):
        out = run(*args, root=tmp_path / "reg")
        assert out.returncode == 0, out.stderr
        assert "NaN" not in out.stdout and "Infinity" not in out.stdout
        data = json.loads(out.stdout)
        metrics = (data if isinstance(data, dict) else data[0])["metrics"]
        assert metrics == {"r2": None, "ratio": None, "f1": 0.5}


def test_score_refuses_to_write_over_its_input(scoring: tuple[Path, Path, np.ndarray]) -> None:
    folder, reg_root, X = scoring
    target = folder / "in.npy"
    np.save(target, X)
    before = target.read_bytes()
    for output in (str(target), f"{folder}/sub/../in.npy"):
        out = run("score", "rf:1", str(target), "-o", output, root=reg_root)
        assert out.returncode == 1
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "is the input file" in lines[0]
        assert target.read_bytes() == before


def test_sign_signs_what_verify_reports_unsigned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    X = np.random.default_rng(0).normal(size=(50, 3))
    reg = ModelRegistry(tmp_path / "reg")
    reg.register("churn", LogisticRegression().fit(X, X[:, 0] > 0))
    reg.promote("churn", 1)
    reg.close()
    monkeypatch.setenv("MODELDEPLOY_SIGNING_KEY", "a-signing-key-of-at-least-16-bytes")
    before = run("verify", root=tmp_path / "reg")
    signed = run("sign", "churn", "--json", root=tmp_path / "reg")
    after = run("verify", root=tmp_path / "reg")
    monkeypatch.delenv("MODELDEPLOY_SIGNING_KEY")
    assert before.returncode == 1 and "churn:1  unsigned" in before.stdout
    assert signed.returncode == 0, signed.stderr
    assert [(s["version"], s["alias"]) for s in json.loads(signed.stdout)["signed"]] == [
        (1, None),
        (1, "production"),
    ]
    assert after.returncode == 0, after.stdout
    no_key = run("sign", root=tmp_path / "reg")
    assert no_key.returncode == 1 and "needs a signing key" in no_key.stderr


def test_fastpath_attaches_the_compiled_fast_path_for_replicas(tmp_path: Path) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    from modeldeploy.fastpath import fast_path_key

    path = tmp_path / "reg"
    X = np.random.default_rng(0).normal(size=(100, 3))
    reg = ModelRegistry(path)
    reg.register("churn", LogisticRegression().fit(X, X[:, 0] > 0), sample=X)
    reg.register("knn", KNeighborsClassifier().fit(X, X[:, 0] > 0), sample=X)
    reg.promote("churn", 1)
    out = run("fastpath", "churn@production", root=path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("churn:1: fast path attached, served by numpy-linear")
    out = run("fastpath", "knn:1", "--json", root=path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (data["version"], data["served_by"], data["accepted"]) == ("knn:1", "native", False)
    out = run("fastpath", "knn", "--require", root=path)
    assert out.returncode == 1
    assert out.stderr.startswith("modeldeploy: error: A verified fast path was required")
    assert reg.get("churn", 1).attachment(fast_path_key()) is not None
    assert [e.kind for e in reg.history("churn")][-1] == "fast_path"
    assert [e.kind for e in reg.history("knn")] == ["registered", "fast_path"]
    reg.close()
