"""Tamper evidence: a registry with a signing key refuses records changed without the key."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modeldeploy import ModelRegistry
from modeldeploy.exceptions import AuthenticityError, IntegrityError, InvalidParameterError

KEY = b"k" * 32
NEW_KEY = "a-brand-new-key-of-32-characters"


@pytest.fixture
def two_models(
    data: tuple[np.ndarray, np.ndarray],
) -> tuple[LogisticRegression, LogisticRegression]:
    X, y = data
    return LogisticRegression(C=0.1).fit(X, y), LogisticRegression(C=10.0).fit(X, y)


def _sql(root: Path, statement: str, *params: object) -> None:
    """Edit registry.db directly, as someone with write access but without the key would."""
    with sqlite3.connect(root / "registry.db") as conn:
        conn.execute(statement, params)
    conn.close()


def _signed(root: Path, models: tuple[LogisticRegression, LogisticRegression]) -> None:
    reg = ModelRegistry(root, signing_key=KEY)
    reg.register("m", models[0], format="skops")
    reg.register("m", models[1], format="skops")
    reg.promote("m", 1)
    reg.close()


def test_swapping_an_artifact_and_its_hash_in_the_database_is_refused(
    tmp_path: Path, two_models: tuple[LogisticRegression, LogisticRegression]
) -> None:
    root = tmp_path / "r"
    _signed(root, two_models)
    # The attacker writes their own artifact and points version 1 at it, hash and size included:
    # the sha256 check alone cannot notice, the artifact is "intact".
    evil = ModelRegistry(tmp_path / "evil").register("x", two_models[1], format="skops")
    src = tmp_path / "evil" / "artifacts" / "sha256" / evil.sha256[:2] / evil.sha256
    dst = root / "artifacts" / "sha256" / evil.sha256[:2] / evil.sha256
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    _sql(
        root,
        "UPDATE versions SET sha256 = ?, size = ? WHERE name = 'm' AND version = 1",
        evil.sha256,
        evil.size,
    )
    assert ModelRegistry(root).verify() == []  # without the key: nothing to notice
    reg = ModelRegistry(root, signing_key=KEY)
    with pytest.raises(AuthenticityError, match=r"m:1 has a signature that does not match"):
        reg.load("m", 1)
    with pytest.raises(AuthenticityError) as info:
        reg.load("m", alias="production")
    assert isinstance(info.value, IntegrityError)
    assert (info.value.name, info.value.version) == ("m", 1)
    assert [p["problem"] for p in reg.verify()] == ["bad signature"]


def test_flipping_the_format_from_skops_to_joblib_is_refused(
    tmp_path: Path, two_models: tuple[LogisticRegression, LogisticRegression]
) -> None:
    root = tmp_path / "r"
    _signed(root, two_models)
    _sql(root, "UPDATE versions SET format = 'joblib' WHERE name = 'm' AND version = 2")
    reg = ModelRegistry(root, signing_key=KEY)
    with pytest.raises(AuthenticityError, match="does not match"):
        reg.load("m", 2)
    assert reg.get("m", 1).load().get_params()["C"] == 0.1  # the intact version still loads
    with pytest.raises(AuthenticityError):  # ModelVersion.load, the path deployers take
        reg.get("m", 2).load()


def test_pointing_production_at_another_version_in_the_database_is_refused(
    tmp_path: Path, two_models: tuple[LogisticRegression, LogisticRegression]
) -> None:
    root = tmp_path / "r"
    _signed(root, two_models)
    _sql(root, "UPDATE aliases SET version = 2 WHERE name = 'm' AND alias = 'production'")
    reg = ModelRegistry(root, signing_key=KEY)
    with pytest.raises(AuthenticityError, match="'production' of model 'm' points at version 2"):
        reg.load("m", alias="production")
    with pytest.raises(AuthenticityError):  # the path a deployer takes: get, then load
        reg.get("m", alias="production")
    # Forging the move itself does not help either: an unsigned "promoted" event.
    _sql(
        root,
        "INSERT INTO events (name, time, kind, version, alias, previous, reason, details) "
        "VALUES ('m', '2030-01-01T00:00:00+00:00', 'promoted', 2, 'production', 1, '', '{}')",
    )
    with pytest.raises(AuthenticityError, match="unsigned latest move"):
        reg.load("m", alias="production")
    assert [p.get("alias") for p in reg.verify()] == ["production"]
    assert reg.load("m", 1).get_params()["C"] == 0.1  # versions themselves are intact


def test_an_unsigned_version_is_refused_with_a_key_and_loads_without(
    tmp_path: Path, two_models: tuple[LogisticRegression, LogisticRegression]
) -> None:
    root = tmp_path / "r"
    plain = ModelRegistry(root)
    plain.register("m", two_models[0])
    plain.promote("m", 1)
    keyed = ModelRegistry(root, signing_key=KEY)
    with pytest.raises(AuthenticityError, match=r"m:1 is unsigned.*registry.sign\('m', 1\)"):
        keyed.load("m", 1)
    assert sorted(p["problem"] for p in keyed.verify()) == [
        "alias 'production' unsigned",
        "unsigned",
    ]
    signed = keyed.sign("m")
    assert [(s["version"], s["alias"], s["was"]) for s in signed] == [
        (1, None, "unsigned"),
        (1, "production", "unsigned"),
    ]
    assert keyed.verify() == []
    assert keyed.load("m", alias="production").get_params()["C"] == 0.1
    assert keyed.sign("m") == []  # nothing left to sign
    assert plain.load("m", alias="production") is not None  # the key is optional for readers


def test_sign_refuses_a_bad_signature_unless_forced(
    tmp_path: Path, two_models: tuple[LogisticRegression, LogisticRegression]
) -> None:
    root = tmp_path / "r"
    _signed(root, two_models)
    _sql(root, "UPDATE versions SET format = 'joblib' WHERE name = 'm' AND version = 2")
    reg = ModelRegistry(root, signing_key=KEY)
    with pytest.raises(AuthenticityError, match="m:2 has a bad signature.*Nothing was signed"):
        reg.sign("m")
    assert [p["problem"] for p in reg.verify()] == ["bad signature"]
    assert [s["was"] for s in reg.sign("m", 2, force=True)] == ["bad signature"]
    assert reg.verify() == []


def test_key_rotation_keeps_old_signatures_valid_until_resigned(
    tmp_path: Path, two_models: tuple[LogisticRegression, LogisticRegression]
) -> None:
    root = tmp_path / "r"
    _signed(root, two_models)
    assert ModelRegistry(root, signing_key=NEW_KEY).verify() != []  # old key gone: refused
    rotated = ModelRegistry(root, signing_key=[NEW_KEY, KEY])
    assert rotated.verify() == []
    assert rotated.load("m", alias="production") is not None
    was = {s["was"] for s in rotated.sign()}
    assert was == {"signed with an older key"}
    new_only = ModelRegistry(root, signing_key=NEW_KEY)
    assert new_only.verify() == []
    assert new_only.load("m", alias="production") is not None


def test_signing_key_from_the_environment(
    tmp_path: Path,
    two_models: tuple[LogisticRegression, LogisticRegression],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path / "r"
    _signed(root, two_models)
    monkeypatch.setenv("MODELDEPLOY_SIGNING_KEY", KEY.decode())
    assert ModelRegistry(root).load("m", alias="production") is not None
    monkeypatch.setenv("MODELDEPLOY_SIGNING_KEYS", f"{NEW_KEY}, {KEY.decode()}")
    assert ModelRegistry(root).verify() == []  # the list wins, the old key still verifies
    monkeypatch.setenv("MODELDEPLOY_SIGNING_KEYS", "short")
    with pytest.raises(InvalidParameterError, match="MODELDEPLOY_SIGNING_KEYS"):
        ModelRegistry(root)


def test_every_move_of_a_signed_alias_stays_loadable(
    tmp_path: Path, two_models: tuple[LogisticRegression, LogisticRegression]
) -> None:
    reg = ModelRegistry(tmp_path / "r", signing_key=KEY)
    reg.register("m", two_models[0])
    reg.register("m", two_models[1])
    reg.promote("m", 1)
    reg.promote("m", 2)
    reg.record_event("m", "swapped", alias="production", reason="custom events do not count")
    assert reg.load("m", alias="production").get_params()["C"] == 10.0
    reg.rollback("m")
    assert reg.load("m", alias="production").get_params()["C"] == 0.1
    assert reg.get("m", 1).tags == {}  # the signature is not one of the user's tags
    assert reg.verify() == []
    with pytest.raises(InvalidParameterError, match="'modeldeploy.seal'"):
        reg.set_tags("m", 1, {"modeldeploy.seal": "forged"})


def test_a_weak_or_missing_key_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="at least 16 bytes.*Got a bytes of 3 bytes"):
        ModelRegistry(tmp_path, signing_key=b"abc")
    with pytest.raises(InvalidParameterError, match="needs a signing key"):
        ModelRegistry(tmp_path).sign()
    assert "k" * 16 not in repr(ModelRegistry(tmp_path, signing_key=KEY)._signer)


def test_without_a_key_nothing_changes(
    tmp_path: Path, two_models: tuple[LogisticRegression, LogisticRegression]
) -> None:
    reg = ModelRegistry(tmp_path / "r")
    reg.register("m", two_models[0])
    reg.promote("m", 1)
    assert [e.kind for e in reg.history("m")] == ["registered", "promoted"]
    assert reg.verify() == []
    with sqlite3.connect(tmp_path / "r" / "registry.db") as conn:
        tags = json.loads(conn.execute("SELECT tags FROM versions").fetchone()[0])
    conn.close()
    assert tags == {}


def test_a_registry_db_from_before_signing_is_upgraded_in_place(
    tmp_path: Path, two_models: tuple[LogisticRegression, LogisticRegression]
) -> None:
    root = tmp_path / "r"
    old = ModelRegistry(root)
    old.register("m", two_models[0])
    old.promote("m", 1)
    old.close()
    _sql(root, "DROP INDEX events_alias")  # the schema of earlier releases
    reg = ModelRegistry(root, signing_key=KEY)
    assert len(reg.sign()) == 2
    assert reg.load("m", alias="production").get_params()["C"] == 0.1
    with sqlite3.connect(root / "registry.db") as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    conn.close()
    assert "events_alias" in names


def test_the_sqlite_alias_query_agrees_with_the_interface_default(
    tmp_path: Path, two_models: tuple[LogisticRegression, LogisticRegression]
) -> None:
    from modeldeploy.registry.stores import MetadataStore

    reg = ModelRegistry(tmp_path / "r", signing_key=KEY)
    reg.register("m", two_models[0])
    reg.register("m", two_models[1])
    reg.promote("m", 1)
    reg.promote("m", 2)
    reg.record_event("m", "note", alias="production")
    reg.rollback("m")
    reg.record_event("m", "note", alias="staging")  # never moved: every event naming it
    for alias in ("production", "staging", "absent"):
        fast = reg.metadata.alias_events("m", alias)
        assert fast == MetadataStore.alias_events(reg.metadata, "m", alias)
    assert [e["kind"] for e in reg.metadata.alias_events("m", "production")] == [
        "rolled_back",
        "signed",
    ]


def test_a_model_version_that_differs_from_its_signed_record_loads_nothing(
    tmp_path: Path, two_models: tuple[LogisticRegression, LogisticRegression]
) -> None:
    _signed(tmp_path, two_models)
    registry = ModelRegistry(tmp_path, signing_key=KEY)
    other = registry.get("m", 2)
    forged = dataclasses.replace(registry.get("m", 1), sha256=other.sha256)
    with pytest.raises(AuthenticityError, match=r"m:1 says sha256 .* signed record says"):
        forged.load()
    assert registry.get("m", 1).load() is not None
