"""_validation: every bad argument gets the same sentence shape."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modeldeploy._validation import check_callable, check_instance, check_timedelta
from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.typing import SupportsPredict


class _Model:
    def predict(self, X: Any, /) -> Any:
        return X


def test_check_instance_returns_the_value_or_names_what_was_found() -> None:
    model = _Model()
    assert check_instance(model, SupportsPredict, "model", "Thing") is model
    assert check_instance(3, (int, str), "n", "Thing") == 3
    with pytest.raises(
        InvalidParameterError,
        match=r"^The 'model' parameter of Thing must be a SupportsPredict\. Got int instead\.$",
    ):
        check_instance(3, SupportsPredict, "model", "Thing")
    with pytest.raises(InvalidParameterError, match=r"must be an int or str\. Got float"):
        check_instance(1.5, (int, str), "n", "Thing")
    with pytest.raises(InvalidParameterError, match=r"must be a model with predict\. Got"):
        check_instance(None, SupportsPredict, "m", "Thing", expected="a model with predict")


@given(st.one_of(st.integers(), st.text(), st.none(), st.floats()))
def test_check_callable_refuses_every_non_callable(value: Any) -> None:
    with pytest.raises(InvalidParameterError, match=r"^The 'fn' parameter of Thing must be a"):
        check_callable(value, "fn", "Thing")


def test_check_callable_returns_callables_as_given() -> None:
    fn: Callable[[int], int] = lambda x: x  # noqa: E731
    assert check_callable(fn, "fn", "Thing") is fn
    assert check_callable(_Model, "fn", "Thing") is _Model


def test_check_timedelta_takes_durations_from_the_bound() -> None:
    assert check_timedelta(timedelta(0), "cooldown", "Thing") == timedelta(0)
    for bad in (timedelta(seconds=-1), 5, None):
        with pytest.raises(InvalidParameterError, match="must be a timedelta >= 0"):
            check_timedelta(bad, "cooldown", "Thing")
