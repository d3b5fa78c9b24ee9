"""A small FastAPI app for the fleet tests: one OnlineDeployer per process, capturing to a
shared folder, and a POST /labels endpoint that writes labels to the same folder.

Run by the tests as ``uvicorn fleet_app:app --app-dir tests/monitoring`` (several processes,
or ``--workers 4``), configured through the environment:

- ``FLEET_MODEL``: a ``joblib`` file holding the model;
- ``FLEET_SHARED``: the shared folder (captured predictions under ``capture/``, labels under
  ``labels/``);
- ``FLEET_SPILL``: the local spill folder of this host.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import joblib
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

from modeldeploy import OnlineDeployer
from modeldeploy.monitoring.capture import LabelCapture, PredictionCapture

state: dict[str, Any] = {}


class PredictRequest(BaseModel):
    rows: list[list[float]]
    ids: list[str] | None = None


class LabelRequest(BaseModel):
    ids: list[str]
    labels: list[int]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    shared = os.environ["FLEET_SHARED"]
    spill = os.environ["FLEET_SPILL"]
    capture = PredictionCapture(shared, feature_rate=0.2, segment_s=0.5, spill=spill)
    labels = LabelCapture(shared, segment_s=0.5, spill=spill)
    deployer = OnlineDeployer(joblib.load(os.environ["FLEET_MODEL"]), capture=capture)
    state.update(capture=capture, labels=labels, deployer=deployer)
    yield
    deployer.close()
    capture.close()
    labels.close()


app = FastAPI(lifespan=lifespan)


@app.get("/health")
def health() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.post("/predict")
def predict(request: PredictRequest) -> dict[str, Any]:
    # A sync endpoint runs in a worker thread: capture.last_ids() is this request's.
    deployer: OnlineDeployer = state["deployer"]
    capture: PredictionCapture = state["capture"]
    out = deployer.predict(np.asarray(request.rows), ids=request.ids)
    ids = request.ids if request.ids is not None else capture.last_ids()
    assert ids is not None
    return {"ids": [str(i) for i in ids], "predictions": out.tolist(), "pid": os.getpid()}


@app.post("/labels")
def labels(request: LabelRequest) -> dict[str, int]:
    state["labels"].log_labels(request.ids, request.labels)
    return {"pid": os.getpid(), "n": len(request.ids)}


@app.get("/stats")
def stats() -> dict[str, Any]:
    return {"capture": state["capture"].stats(), "labels": state["labels"].stats()}
