"""Bad arguments to the registry get a clear InvalidParameterError and leave nothing behind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modeldeploy import ModelRegistry
from modeldeploy import _validation as val
from modeldeploy.exceptions import InvalidParameterError, SerializationError


class Unusual:
    """A model type skops does not trust by default."""

    def predict(self, X: Any) -> Any:
        return np.zeros(len(X))


@pytest.mark.parametrize("suffix", ["\n", "\r\n", " ", "\t", "\x00"])
def test_names_aliases_and_keys_with_trailing_junk_are_refused(
    registry: ModelRegistry, model: object, suffix: str
) -> None:
    with pytest.raises(InvalidParameterError, match="'name' parameter"):
        registry.register(f"churn{suffix}", model)
    registry.register("churn", model)
    with pytest.raises(InvalidParameterError, match="'alias' parameter"):
        registry.promote("churn", 1, alias=f"production{suffix}")
    with pytest.raises(InvalidParameterError, match="'key' parameter"):
        registry.attach("churn", 1, f"fast{suffix}", b"x")
    with pytest.raises(InvalidParameterError, match="'kind' parameter"):
        registry.record_event("churn", f"swapped{suffix}")
    assert registry.models() == ["churn"]
    assert registry.aliases("churn") == {}


@given(st.text(max_size=140))
def test_check_name_accepts_exactly_the_documented_names(text: str) -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    valid = 0 < len(text) <= 128 and text[0] not in "._-" and all(c in allowed for c in text)
    try:
        val.check_name(text, "name", "T")
    except InvalidParameterError:
        assert not valid
    else:
        assert valid


@pytest.mark.parametrize("huge", [10**30, 2**63, -(2**70)])
def test_huge_version_numbers_are_refused_clearly(
    registry: ModelRegistry, model: object, huge: int
) -> None:
    registry.register("m", model)
    calls: list[Callable[[], object]] = [
        lambda: registry.get("m", huge),
        lambda: registry.load("m", huge),
        lambda: registry.promote("m", huge),
        lambda: registry.delete_version("m", huge),
        lambda: registry.set_metrics("m", huge, {"f1": 0.5}),
        lambda: registry.set_tags("m", huge, {"a": 1}),
        lambda: registry.attach("m", huge, "k", b"x"),
        lambda: registry.attachment("m", huge, "k"),
        lambda: registry.record_event("m", "note", version=huge),
        lambda: registry.register("m", model, parent=huge),
    ]
    for call in calls:
        with pytest.raises(InvalidParameterError, match=r"must be an int >= 1 and <= 9223372036"):
            call()
    assert [v.version for v in registry.versions("m")] == [1]


def test_the_largest_storable_version_is_looked_up_not_refused(
    registry: ModelRegistry, model: object
) -> None:
    registry.register("m", model)
    with pytest.raises(KeyError, match="has no version 9223372036854775807"):
        registry.get("m", 2**63 - 1)


def test_a_metric_that_is_an_array_is_refused_naming_it(
    registry: ModelRegistry, model: object
) -> None:
    with pytest.raises(InvalidParameterError, match="'f1': an array of 2 values"):
        registry.register("m", model, metrics={"auc": 0.9, "f1": np.array([0.9, 0.8])})
    assert registry.models() == []
    assert list((Path(registry.root) / "artifacts").rglob("sha256/*/*")) == []  # nothing written
    v = registry.register(
        "m",
        model,
        metrics={"f1": np.array([0.75]), "auc": np.float32(0.5)},
        params={"layers": np.array([64, 32]), "C": np.float64(1.0)},
        tags={"classes": np.array(["a", "b"])},
    )
    assert v.metrics == {"f1": 0.75, "auc": 0.5}
    assert v.params == {"layers": [64, 32], "C": 1.0}
    assert v.tags == {"classes": ["a", "b"]}
    with pytest.raises(InvalidParameterError, match="'recall': an array of 3 values"):
        registry.set_metrics("m", 1, {"recall": [0.1, 0.2, 0.3]})
    with pytest.raises(InvalidParameterError, match="'empty': an array of 0 values"):
        registry.set_metrics("m", 1, {"empty": np.array([])})
    assert registry.get("m", 1).metrics == {"f1": 0.75, "auc": 0.5}


def test_skops_registration_refuses_untrusted_types_before_any_version(
    tmp_path: Path,
) -> None:
    pytest.importorskip("skops")
    reg = ModelRegistry(tmp_path)
    with pytest.raises(SerializationError, match=r"Refused to register.*Unusual.*trusted=") as info:
        reg.register("m", Unusual(), format="skops")
    assert "test_hostile_input.Unusual" in str(info.value)
    assert reg.models() == []
    assert list((tmp_path / "artifacts").rglob("sha256/*/*")) == []


@pytest.mark.parametrize("schema", ["models\n", "models;drop", "Models", "1models", ""])
def test_a_postgres_schema_name_must_be_a_plain_identifier(schema: str) -> None:
    from modeldeploy.registry._locations import check_schema

    with pytest.raises(InvalidParameterError, match="'schema' parameter"):
        check_schema(schema, "ModelRegistry")
    assert check_schema("models_2", "ModelRegistry") == "models_2"
