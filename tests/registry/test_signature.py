from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modeldeploy import SchemaError, Signature
from modeldeploy.exceptions import InvalidParameterError


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(  # type: ignore[no-any-return]
        {
            "age": pd.array([31, 45, None, 52], dtype="Int64"),
            "plan": ["basic", "pro", "basic", "pro"],
            "spend": np.array([10.5, 99.0, 3.25, 47.0]),
        }
    )


def test_infer_from_array_names_columns_and_profiles() -> None:
    X = np.random.default_rng(1).normal(size=(1000, 3))
    sig = Signature.infer(X)
    assert sig.names == ["x0", "x1", "x2"]
    assert sig.dtypes == {"x0": "float64", "x1": "float64", "x2": "float64"}
    p = sig["x1"].profile
    assert p["count"] == 1000 and p["nan"] == 0
    assert p["min"] == X[:, 1].min() and p["max"] == X[:, 1].max()
    assert sum(p["counts"]) == 1000
    np.testing.assert_allclose(p["edges"], np.quantile(X[:, 1], np.linspace(0, 1, 21)))


def test_profile_is_a_sketch_not_the_data() -> None:
    X = np.random.default_rng(2).normal(size=(50_000, 20))
    size = len(json.dumps(Signature.infer(X).to_dict()))
    assert size < 40_000  # about 1.5 KB per feature, whatever the number of rows


def test_infer_from_dataframe_keeps_names_dtypes_and_missing(frame: pd.DataFrame) -> None:
    sig = Signature.infer(frame)
    assert sig.input_type == "dataframe"
    assert [(f.name, f.dtype, f.kind, f.allow_nan) for f in sig.features] == [
        ("age", "int64", "numeric", True),
        ("plan", sig["plan"].dtype, "categorical", False),
        ("spend", "float64", "numeric", False),
    ]
    assert sig["plan"].profile["values"] == {"basic": 2, "pro": 2}


def test_infer_from_records() -> None:
    sig = Signature.infer([{"a": 1, "b": "x"}, {"a": 2.5, "b": "y"}])
    assert sig.input_type == "records"
    assert (sig["a"].kind, sig["b"].kind) == ("numeric", "categorical")


def test_round_trip_through_dict(frame: pd.DataFrame) -> None:
    sig = Signature.infer(frame)
    again = Signature.from_dict(json.loads(json.dumps(sig.to_dict())))
    assert again == sig
    assert again["age"].profile == sig["age"].profile


def test_validate_reorders_dataframe_columns_by_name(frame: pd.DataFrame) -> None:
    sig = Signature.infer(frame)
    out = sig.validate(frame[["spend", "plan", "age"]])
    assert out.shape == (4, 3)
    assert list(out[:, 1]) == ["basic", "pro", "basic", "pro"]
    np.testing.assert_array_equal(out[:, 2].astype(float), frame["spend"].to_numpy())
    assert np.isnan(out[2, 0])


def test_single_row_forms_give_one_row() -> None:
    X = np.arange(12, dtype=float).reshape(4, 3)
    sig = Signature.infer(X)
    expected = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(sig.validate(np.array([1.0, 2.0, 3.0])), expected)
    np.testing.assert_array_equal(sig.validate([1, 2, 3]), expected)
    np.testing.assert_array_equal(sig.validate({"x2": 3, "x0": 1, "x1": 2}), expected)
    np.testing.assert_array_equal(
        sig.validate(pd.DataFrame([[1.0, 2.0, 3.0]], columns=["x0", "x1", "x2"])), expected
    )


def test_wrong_number_of_columns_is_a_schema_error() -> None:
    sig = Signature.infer(np.zeros((3, 4)))
    with pytest.raises(SchemaError, match="Expected 4 features per row.*got 3"):
        sig.validate(np.zeros((2, 3)))


def test_missing_and_unknown_columns_are_named(frame: pd.DataFrame) -> None:
    sig = Signature.infer(frame)
    with pytest.raises(SchemaError, match="Missing feature \\['plan'\\]") as info:
        sig.validate(frame.drop(columns="plan"))
    assert info.value.column == "plan"
    with pytest.raises(SchemaError, match="Unknown feature \\['extra'\\]"):
        sig.validate(frame.assign(extra=1))
    assert sig.validate(frame.assign(extra=1), extra="ignore").shape == (4, 3)


def test_string_in_numeric_column_names_column_and_row(frame: pd.DataFrame) -> None:
    sig = Signature.infer(frame)
    bad = [{"age": 3, "plan": "pro", "spend": 1.0}, {"age": 3, "plan": "pro", "spend": "12"}]
    with pytest.raises(SchemaError, match="'spend'.*row 1 holds '12'") as info:
        sig.validate(bad)
    assert (info.value.column, info.value.row) == ("spend", 1)


def test_nan_refused_only_where_none_was_seen(frame: pd.DataFrame) -> None:
    sig = Signature.infer(frame)
    ok = {"age": None, "plan": "pro", "spend": 1.0}
    assert np.isnan(sig.validate(ok)[0, 0])
    with pytest.raises(SchemaError, match="'spend' \\(column 2\\) has NaN at row 0") as info:
        sig.validate({"age": 1, "plan": "pro", "spend": float("nan")})
    assert info.value.row == 0


def test_inf_is_refused() -> None:
    sig = Signature.infer(np.ones((3, 2)))
    with pytest.raises(SchemaError, match="'x1' \\(column 1\\) has inf at row 1"):
        sig.validate(np.array([[1.0, 1.0], [1.0, np.inf]]))


def test_allow_nan_override_accepts_missing_values() -> None:
    sig = Signature.infer(np.ones((3, 2)), allow_nan=["x1"])
    assert np.isnan(sig.validate([1.0, np.nan])[0, 1])
    with pytest.raises(SchemaError):
        sig.validate([np.nan, 1.0])
    with pytest.raises(InvalidParameterError, match="unknown features \\['nope'\\]"):
        Signature.infer(np.ones((3, 2)), allow_nan=["nope"])


def test_int_feature_accepts_floats_from_pandas_missing_values() -> None:
    sig = Signature.infer(np.array([[1, 2], [3, 4]]), allow_nan=True)
    assert sig.dtypes == {"x0": "int64", "x1": "int64"}
    out = sig.validate(pd.DataFrame({"x0": [1.0, np.nan], "x1": [2, 3]}))
    assert out.dtype == np.float64 and np.isnan(out[1, 0])


def test_float32_signature_returns_float32() -> None:
    sig = Signature.infer(np.ones((3, 2), dtype=np.float32))
    assert sig.validate(np.ones((1, 2))).dtype == np.float32
    with pytest.raises(SchemaError, match="inf"):  # too large for float32
        sig.validate(np.array([[1e300, 1.0]]))


def test_empty_batch_is_valid() -> None:
    sig = Signature.infer(np.ones((3, 2)))
    assert sig.validate(np.empty((0, 2))).shape == (0, 2)


def test_to_model_input_rebuilds_a_dataframe(frame: pd.DataFrame) -> None:
    sig = Signature.infer(frame)
    df = sig.to_model_input(sig.validate(frame))
    assert list(df.columns) == ["age", "plan", "spend"]
    assert df["spend"].dtype == np.float64
    arr_sig = Signature.infer(np.ones((2, 2)))
    arr = arr_sig.validate(np.ones((1, 2)))
    assert arr_sig.to_model_input(arr) is arr


def test_example_rows_are_valid_and_within_range(frame: pd.DataFrame) -> None:
    sig = Signature.infer(frame)
    ex = sig.example(50)
    assert ex.shape == (50, 3)
    assert set(ex[:, 1]) <= {"basic", "pro"}
    spend = ex[:, 2].astype(float)
    assert spend.min() >= 3.25 and spend.max() <= 99.0


def test_bad_samples_raise_parameter_errors() -> None:
    with pytest.raises(InvalidParameterError, match="must be 2-D"):
        Signature.infer(np.ones(5))
    with pytest.raises(InvalidParameterError, match="at least one row"):
        Signature.infer(np.ones((0, 3)))
    with pytest.raises(InvalidParameterError, match="same keys"):
        Signature.infer([{"a": 1}, {"b": 2}])


def test_reprs_are_short_and_html_is_a_table(frame: pd.DataFrame) -> None:
    sig = Signature.infer(frame)
    assert repr(sig).startswith("Signature(3 features: age: int64")
    assert "<table>" in sig._repr_html_() and "plan" in sig._repr_html_()


# ---------------------------------------------------------------- properties

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def signature_and_valid_input(draw: st.DrawFn) -> tuple[Signature, np.ndarray, Any]:
    n_features = draw(st.integers(1, 6))
    sample = draw(hnp.arrays(np.float64, (draw(st.integers(1, 20)), n_features), elements=finite))
    nan_cols = draw(st.lists(st.integers(0, n_features - 1), unique=True, max_size=n_features))
    sig = Signature.infer(sample, allow_nan=[f"x{j}" for j in nan_cols])
    n_rows = draw(st.integers(0, 10))
    rows = draw(hnp.arrays(np.float64, (n_rows, n_features), elements=finite))
    for j in nan_cols:
        mask = draw(hnp.arrays(np.bool_, n_rows))
        rows[mask, j] = np.nan
    form = draw(st.sampled_from(["array", "frame", "records", "lists", "float32"]))
    if form == "frame":
        order = draw(st.permutations(sig.names))
        value: Any = pd.DataFrame(rows, columns=sig.names)[list(order)]
    elif form == "records":
        value = [dict(zip(sig.names, map(float, r), strict=True)) for r in rows] or rows
    elif form == "lists":
        value = rows.tolist() if n_rows else rows
    elif form == "float32":
        rows = rows.astype(np.float32).astype(np.float64)
        value = rows.astype(np.float32)
    else:
        value = rows
    return sig, rows, value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signature_and_valid_input())
def test_valid_input_never_raises_and_keeps_values(case: tuple[Signature, np.ndarray, Any]) -> None:
    sig, rows, value = case
    out = sig.validate(value)
    assert out.shape == rows.shape
    np.testing.assert_array_equal(out, rows)


@st.composite
def signature_and_invalid_input(draw: st.DrawFn) -> tuple[Signature, Any]:
    n_features = draw(st.integers(1, 5))
    sig = Signature.infer(
        draw(hnp.arrays(np.float64, (draw(st.integers(1, 10)), n_features), elements=finite))
    )
    n_rows = draw(st.integers(1, 6))
    rows = draw(hnp.arrays(np.float64, (n_rows, n_features), elements=finite)).astype(object)
    i, j = draw(st.integers(0, n_rows - 1)), draw(st.integers(0, n_features - 1))
    fault = draw(st.sampled_from(["nan", "inf", "string", "none", "width", "missing", "extra"]))
    if fault == "nan":
        rows[i, j] = float("nan")
    elif fault == "inf":
        rows[i, j] = draw(st.sampled_from([np.inf, -np.inf]))
    elif fault == "string":
        rows[i, j] = draw(st.text(max_size=5))
    elif fault == "none":
        rows[i, j] = None
    elif fault == "width":
        extra_cols = draw(st.sampled_from([-1, 1])) if n_features > 1 else 1
        width = n_features + extra_cols
        return sig, np.zeros((n_rows, width))
    elif fault == "missing":
        records = [dict(zip(sig.names, r, strict=True)) for r in rows]
        del records[i][sig.names[j]]
        return sig, records
    else:
        records = [dict(zip(sig.names, r, strict=True)) for r in rows]
        records[i]["unexpected"] = 1.0
        return sig, records
    if draw(st.booleans()):
        return sig, pd.DataFrame(rows, columns=sig.names)
    return sig, rows


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signature_and_invalid_input())
def test_invalid_input_raises_schema_error_and_nothing_else(case: tuple[Signature, Any]) -> None:
    sig, value = case
    with pytest.raises(SchemaError):
        sig.validate(value)


@pytest.mark.parametrize("column", ["normal", "ties", "constant", "with_nan"])
def test_profile_edges_and_counts_match_numpy(column: str) -> None:
    rng = np.random.default_rng(3)
    values = {
        "normal": rng.normal(size=5000),
        "ties": np.round(rng.normal(size=5000)),
        "constant": np.full(5000, 2.5),
        "with_nan": np.where(rng.random(5000) < 0.1, np.nan, rng.exponential(size=5000)),
    }[column]
    p = Signature.infer(values.reshape(-1, 1))["x0"].profile
    finite = values[np.isfinite(values)]
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, 21)))
    np.testing.assert_allclose(p["edges"], edges)
    expected = np.histogram(finite, bins=edges)[0] if edges.size > 1 else [finite.size]
    assert p["counts"] == list(expected)
    assert p["nan"] == int(np.isnan(values).sum())


# ---------------------------------------------------------------------- hostile values

NAMES = ["a", "b", "c"]
#: Values that are not usable numbers, each blamed on its own column and row.
BAD_VALUES = [10**400, -(10**400), 1j, 2 + 0j, np.complex128(1j), b"7", b"x", "8", "nope"]


def _numeric_signature() -> Signature:
    return Signature.infer(np.random.default_rng(0).normal(size=(50, 3)), names=NAMES)


def _rows_with(bad: Any, row: int, col: int, n_rows: int) -> list[list[Any]]:
    rows: list[list[Any]] = [[float(i), float(i) + 0.5, -float(i)] for i in range(n_rows)]
    rows[row][col] = bad
    return rows


@settings(max_examples=150, deadline=None)
@given(
    bad=st.sampled_from(BAD_VALUES),
    n_rows=st.integers(1, 6),
    where=st.tuples(st.integers(0, 5), st.integers(0, 2)),
    form=st.sampled_from(["rows", "records", "dataframe", "object array"]),
)
def test_unusable_value_is_blamed_on_its_own_column_and_row(
    bad: Any, n_rows: int, where: tuple[int, int], form: str
) -> None:
    row, col = where[0] % n_rows, where[1]
    rows = _rows_with(bad, row, col, n_rows)
    X: Any = rows
    if form == "records":
        X = [dict(zip(NAMES, r, strict=True)) for r in rows]
    elif form == "dataframe":
        X = pd.DataFrame(
            {n: pd.Series([r[j] for r in rows], dtype=object) for j, n in enumerate(NAMES)}
        )
    elif form == "object array":
        X = np.array(rows, dtype=object)
    with pytest.raises(SchemaError) as info:
        _numeric_signature().validate(X)
    assert (info.value.column, info.value.row) == (NAMES[col], row), str(info.value)
    assert f"row {row}" in str(info.value) and repr(NAMES[col]) in str(info.value)


def test_huge_integer_is_a_schema_error_not_an_overflow() -> None:
    with pytest.raises(SchemaError, match="too large") as info:
        _numeric_signature().validate([{"a": 1.0, "b": 10**400, "c": 2.0}])
    assert (info.value.column, info.value.row) == ("b", 0)


def test_complex_array_is_blamed_on_the_first_complex_value() -> None:
    X = np.zeros((4, 3), dtype=complex)
    X[2, 1] = 1 + 2j
    with pytest.raises(SchemaError, match="complex") as info:
        _numeric_signature().validate(X)
    assert (info.value.column, info.value.row) == ("b", 2)


def test_numbers_as_text_with_one_bad_value_blame_the_bad_value() -> None:
    # One bad value in a CSV column makes pandas read the whole column as text.
    df = pd.DataFrame({"a": ["1.5", "2", "3"], "b": ["1", "x?", "2"], "c": ["0", "1", "2"]})
    with pytest.raises(SchemaError) as info:
        _numeric_signature().validate(df)
    assert (info.value.column, info.value.row) == ("a", 0)  # all text: the first row is at fault
    df["a"] = [1.5, 2.0, 3.0]
    with pytest.raises(SchemaError) as info:
        _numeric_signature().validate(df)
    assert (info.value.column, info.value.row) == ("b", 1)
    assert "'x?'" in str(info.value) and "written as text" in str(info.value)


@pytest.mark.parametrize("bad", [10**400, 1j], ids=["huge int", "complex"])
def test_infer_refuses_unusable_numbers_naming_column_and_row(bad: Any) -> None:
    rows = _rows_with(bad, 3, 2, 5)
    with pytest.raises(SchemaError) as info:
        Signature.infer(rows, names=NAMES)
    assert (info.value.column, info.value.row) == ("c", 3), str(info.value)
