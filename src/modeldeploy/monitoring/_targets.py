"""What the watched model predicts: the task, and class labels as dense integer codes.

The windows count classes by code (confusion matrices, prediction counts), so every label and
prediction passes through `Targets` first. It learns the task (from the first
predictions, or from the classes given) and the classes as they appear, converts labels to the
type of the predictions, and picks the positive class and the average the metrics report.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from modeldeploy.exceptions import InvalidParameterError, SchemaError
from modeldeploy.monitoring._coerce import (
    class_kind,
    coerce_classes,
    missing_mask,
    scalar,
    to_numbers,
)

__all__ = ["Targets"]

#: Integer labels below this encode by table lookup.
_LUT_LIMIT = 4096


class Targets:
    """The task and the class encoding of one monitor.

    Parameters
    ----------
    task
        ``"classification"``, ``"regression"``, or ``None`` until the first outputs tell.
    max_classes
        Most distinct class labels; one more raises
        [`SchemaError`][modeldeploy.exceptions.SchemaError].
    on_new_class
        Called with the number of classes each time a class is added (the monitor grows its
        class-sized arrays there).

    Examples
    --------
    >>> t = Targets(None, max_classes=10)
    >>> t.encode(np.array(["b", "a", "b"])).tolist(), t.task, t.classes
    ([1, 0, 1], 'classification', ['a', 'b'])
    >>> t.average_and_pos(None, None)
    ('binary', 1)
    """

    def __init__(
        self,
        task: str | None,
        max_classes: int,
        on_new_class: Callable[[int], None] | None = None,
    ) -> None:
        self.task = task
        self.max_classes = max_classes
        self.on_new_class = on_new_class
        self.classes: list[Any] = []
        self._index: dict[Any, int] = {}
        self._lut = np.zeros(0, dtype=np.int64)
        # classes 0, 1, ..., _dense - 1 have codes 0, 1, ...: such labels are their own code
        self._dense = 0
        self._kind: str | None = None

    def __len__(self) -> int:
        return len(self.classes)

    def settle(self, task: str) -> None:
        """Take ``task`` as the task unless one is known already."""
        if self.task is None:
            self.task = task

    def kind(self) -> str | None:
        """The type of the class labels (that of the first class seen), once there is one."""
        if self._kind is None and self.classes:
            self._kind = class_kind(self.classes[0])  # the first class never changes
        return self._kind

    def code(self, label: Any) -> int:
        """The code of one class label, registering it when new."""
        code = self._index.get(label)
        if code is not None:
            return code
        if len(self.classes) >= self.max_classes:
            raise SchemaError(
                f"More than max_classes={self.max_classes} distinct labels; the new one is "
                f"{label!r}. If the model is a regressor pass task='regression', else raise "
                "max_classes."
            )
        self.settle("classification")
        code = len(self.classes)
        self.classes.append(label)
        self._index[label] = code
        if isinstance(label, int) and 0 <= label < _LUT_LIMIT:
            # Small non-negative int labels (the common case) encode by table lookup.
            if label >= self._lut.size:
                table = np.full(max(label + 1, 2 * self._lut.size, 8), -1, dtype=np.int64)
                table[: self._lut.size] = self._lut
                self._lut = table
            self._lut[int(label)] = code  # int(): a bool index would mask, not index
            if label == code == self._dense:
                self._dense += 1
        if self.on_new_class is not None:
            self.on_new_class(len(self.classes))
        return code

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Class labels to class codes, registering new classes."""
        if values.size == 0:
            return np.zeros(0, dtype=np.int64)
        if values.dtype.kind in "biu" and self._lut.size:
            ints = values.astype(np.int64, copy=False)
            if int(ints.view(np.uint64).max()) < self._dense:  # (negatives are huge there)
                return ints
            if ints.min() >= 0 and ints.max() < self._lut.size:
                codes = self._lut[ints]
                if codes.min() >= 0:
                    return codes
        try:
            uniq, inverse = np.unique(values, return_inverse=True)
        except TypeError:  # mixed types that do not sort
            return np.asarray([self.code(scalar(v)) for v in values], dtype=np.int64)
        codes = np.asarray([self.code(u) for u in uniq.tolist()], dtype=np.int64)
        return codes[inverse.ravel()]

    def encode_masked(self, values: np.ndarray, missing: np.ndarray | None) -> np.ndarray:
        """Class codes of ``values``, ``-1`` where a value is missing (no answer, no label)."""
        if missing is None:
            return self.encode(values)
        codes = np.full(values.shape[0], -1, dtype=np.int64)
        codes[~missing] = self.encode(values[~missing])
        return codes

    def prepare_labels(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels converted to the predictions' type (or refused), and where they are missing.

        Nothing is changed, so a [`SchemaError`][modeldeploy.exceptions.SchemaError] here leaves the
        monitor as it was. Before the task is known the labels are returned as they are (they wait
        for their predictions, and are converted when those come).
        """
        if self.task == "regression":
            numbers = to_numbers(values, "y_true")
            bad = ~np.isfinite(numbers)
            return numbers, (bad if bad.any() else None)
        if self.task == "classification":
            return coerce_classes(values, self.kind() or class_kind(values), "y_true")
        return values, missing_mask(values)

    def average_and_pos(self, average: str | None, pos_label: Any) -> tuple[str, int | None]:
        """The average the metrics report, and the positive class's code for ``"binary"``."""
        k = len(self.classes)
        average = average or ("binary" if k <= 2 else "macro")
        if average != "binary":
            return average, None
        if k > 2:
            raise InvalidParameterError(
                f"average='binary' needs at most two classes, but the monitor has seen {k}: "
                f"{self.classes[:10]}. Use average='macro', 'weighted' or 'micro'."
            )
        label = pos_label
        if label is None:
            classes = self.classes
            numeric = all(isinstance(c, (int, float)) for c in classes)
            if 1 in self._index or (numeric and len(classes) < 2):
                label = 1  # scikit-learn's default pos_label
            else:
                try:
                    label = sorted(classes)[-1]
                except TypeError:
                    label = classes[-1]
        return "binary", self.code(scalar(label))

    @staticmethod
    def union(parts: list[Targets], given: list[Any] | None) -> list[Any]:
        """The classes of several monitors in one canonical order.

        The classes given to the monitors (``classes=``, the column order of ``y_proba``)
        first, then the others sorted (in order of first appearance when they do not sort).
        """
        seen = list(dict.fromkeys(c for t in parts for c in t.classes))
        first = [] if given is None else [scalar(c) for c in given]
        known = set(first)
        rest = [c for c in seen if c not in known]
        with contextlib.suppress(TypeError):  # mixed types: the order they appeared in
            rest = sorted(rest)
        return first + rest

    def to_state(self) -> dict[str, Any]:
        """The task and the classes in code order (JSON-friendly)."""
        return {"task": self.task, "class_list": list(self.classes)}

    @classmethod
    def from_state(
        cls,
        state: Mapping[str, Any],
        max_classes: int,
        on_new_class: Callable[[int], None] | None = None,
    ) -> Targets:
        """Rebuild what `to_state` gave (``on_new_class`` hears of each class again)."""
        out = cls(state["task"], max_classes, on_new_class)
        for label in state["class_list"]:
            out.code(scalar(label))
        return out
