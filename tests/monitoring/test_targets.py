"""Targets: the task and the class encoding, alone, and their state."""

from __future__ import annotations

import numpy as np
import pytest

from modeldeploy.exceptions import InvalidParameterError, SchemaError
from modeldeploy.monitoring._targets import Targets


def test_new_classes_get_dense_codes_and_are_announced() -> None:
    seen: list[int] = []
    t = Targets(None, max_classes=5, on_new_class=seen.append)
    assert t.encode(np.array([3, 7, 3])).tolist() == [0, 1, 0]
    assert t.encode(np.array([7, 9])).tolist() == [1, 2]  # table lookup, then a new class
    assert seen == [1, 2, 3] and t.task == "classification"


def test_past_max_classes_is_a_schema_error() -> None:
    t = Targets(None, max_classes=2)
    t.encode(np.array([0, 1]))
    with pytest.raises(SchemaError, match="max_classes=2"):
        t.code(2)


def test_labels_are_converted_to_the_predictions_type() -> None:
    t = Targets("classification", max_classes=5)
    t.encode(np.array([0, 1]))
    values, missing = t.prepare_labels(np.array(["1", "0"]))
    assert values.tolist() == [1, 0] and missing is None


def test_binary_average_needs_at_most_two_classes() -> None:
    t = Targets(None, max_classes=5)
    t.encode(np.array(["a", "b", "c"]))
    assert t.average_and_pos(None, None) == ("macro", None)
    with pytest.raises(InvalidParameterError, match="binary"):
        t.average_and_pos("binary", None)


def test_state_round_trip_keeps_the_codes() -> None:
    t = Targets(None, max_classes=5)
    t.encode(np.array(["b", "a"]))
    back = Targets.from_state(t.to_state(), max_classes=5)
    assert back.classes == t.classes and back.task == "classification"
    assert back.encode(np.array(["a", "b"])).tolist() == [0, 1]
