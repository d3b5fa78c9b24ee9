"""OneRowBuffer: one-row calls batched by what they carry, bad ones dropped alone."""

from __future__ import annotations

import numpy as np
import pytest

from modeldeploy.monitoring._ingest import Batch, OneRowBuffer, as_list


def test_calls_that_agree_are_one_batch_and_others_start_a_new_one() -> None:
    buf = OneRowBuffer(limit=10)
    buf.add((None, 1, "a", None, None, "v:1", None, 1.0))
    buf.add((None, 0, "b", None, None, "v:1", 0.5, 2.0))
    buf.add((None, 1, "c", None, None, "v:2", None, 3.0))
    batches: list[Batch] = []
    buf.drain(batches.append)
    assert [b.version for b in batches] == ["v:1", "v:2"]
    assert batches[0].ids == ["a", "b"] and batches[0].latencies == [None, 0.5]
    assert batches[0].times is not None and batches[0].times.tolist() == [1.0, 2.0]
    assert len(buf) == 0


def test_a_refused_batch_is_retried_one_call_at_a_time(caplog: pytest.LogCaptureFixture) -> None:
    buf = OneRowBuffer(limit=10)
    for value in (1, 2, 3):
        buf.add((None, value, None, None, None, None, None, 0.0))
    kept: list[int] = []

    def fold(batch: Batch) -> None:
        if 2 in batch.y_pred.tolist():
            raise ValueError("no twos")
        kept.extend(batch.y_pred.tolist())

    buf.drain(fold)
    assert kept == [1, 3] and "dropped a one-row call" in caplog.text


def test_ids_of_any_shape_become_a_list() -> None:
    assert as_list(np.array([[1], [2]])) == [1, 2]
    assert as_list("a") == ["a"] and as_list([np.int64(3)]) == [3]
