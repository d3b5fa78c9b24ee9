"""A FastAPI front for a registered model, to include in your own app (``[fastapi]``).

[`ModelService`][modeldeploy.integrations.fastapi.ModelService] follows an alias of a
[`ModelRegistry`][modeldeploy.ModelRegistry] with an [`OnlineDeployer`][modeldeploy.OnlineDeployer]
and feeds a [`Monitor`][modeldeploy.Monitor];
[`ModelService.lifespan`][modeldeploy.integrations.fastapi.ModelService.lifespan] opens and closes
them with the app, and [`ModelService.router`][modeldeploy.integrations.fastapi.ModelService.router]
returns an ``APIRouter`` with the endpoints:

``POST /predict``
    JSON rows (objects keyed by feature name, or lists in the signature's order), validated
    by the signature; the answer says which version answered and gives each row an id to
    send its label with.
``POST /labels``
    Ground truth for earlier predictions, by id: fed to the monitor.
``GET /metrics``
    Prometheus text (needs ``modeldeploy[prometheus]``): the deployer's counters when the
    service has a [`DeployerMetrics`][modeldeploy.integrations.prometheus.DeployerMetrics], and the
    monitor's state.
``GET /health``, ``GET /ready``
    Liveness (the process answers) and readiness (the first version is loaded and warm).

Unlike a service framework, nothing here owns the app: mount the router where you like, next
to your own routes, under your own prefix and dependencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from modeldeploy._config import DEFAULT_ALIAS, DEFAULT_POLL_S
from modeldeploy.deployers.online.deployer import OnlineDeployer
from modeldeploy.exceptions import (
    DeploymentError,
    InvalidParameterError,
    MissingDependencyError,
    PredictionTimeoutError,
    SchemaError,
)
from modeldeploy.monitoring.monitor import Monitor
from modeldeploy.registry.registry import ModelRegistry

try:
    from fastapi import APIRouter, HTTPException, Response
    from pydantic import BaseModel, Field
except ImportError:  # pragma: no cover - the extra is installed in the test environment
    raise MissingDependencyError("fastapi", "fastapi", "modeldeploy.integrations.fastapi") from None

__all__ = ["LabelsRequest", "ModelService", "PredictRequest", "PredictResponse"]

logger = logging.getLogger("modeldeploy.integrations.fastapi")
_OWNER = "ModelService"


class PredictRequest(BaseModel):
    """The body of ``POST /predict``."""

    rows: list[Any] = Field(
        description="Rows to score: objects keyed by feature name, or lists of values in the "
        "signature's feature order.",
        min_length=1,
    )
    ids: list[str | int] | None = Field(
        default=None,
        description="One id per row, to send labels with later; generated when left out.",
    )
    key: str | None = Field(
        default=None, description="A request key: with a canary, one key sees one version."
    )


class PredictResponse(BaseModel):
    """The answer of ``POST /predict``."""

    version: str = Field(description='The version that answered ("churn:3").')
    ids: list[str | int] = Field(description="One id per row (the request's, or generated).")
    predictions: list[Any] = Field(description="One prediction per row.")


class LabelsRequest(BaseModel):
    """The body of ``POST /labels``."""

    ids: list[str | int] = Field(description="Ids of earlier predictions.", min_length=1)
    y_true: list[Any] = Field(description="The true label of each id.", min_length=1)


class ModelService:
    """One registered model served behind FastAPI: registry, deployer and monitor together.

    Nothing is opened when the service is built;
    [`open`][modeldeploy.integrations.fastapi.ModelService.open] (or the app's lifespan, see
    [`lifespan`][modeldeploy.integrations.fastapi.ModelService.lifespan]) opens the registry when
    given as a location, follows ``alias`` of ``name`` with an
    [`OnlineDeployer`][modeldeploy.OnlineDeployer] (a promotion elsewhere is picked up within
    ``poll_s``), and builds the monitor;
    [`close`][modeldeploy.integrations.fastapi.ModelService.close] closes them in reverse order.

    Parameters
    ----------
    registry
        A [`ModelRegistry`][modeldeploy.ModelRegistry] (closed by
        [`close`][modeldeploy.integrations.fastapi.ModelService.close] as well), or where one lives
        (a folder, a ``postgresql://`` URL), opened by
        [`open`][modeldeploy.integrations.fastapi.ModelService.open].
    name, alias
        The model and the alias to serve.
    monitor
        ``True`` (default): a [`Monitor.for_version`][modeldeploy.Monitor.for_version] of
        the first version served; a [`Monitor`][modeldeploy.Monitor] of your own; or ``None`` for
        none (``/labels`` then answers 404).
    monitor_state
        A file the monitor is loaded from at
        [`open`][modeldeploy.integrations.fastapi.ModelService.open] when it exists, and saved to at
        [`close`][modeldeploy.integrations.fastapi.ModelService.close], so a restart keeps the
        window and the labels waiting.
    metrics
        A [`DeployerMetrics`][modeldeploy.integrations.prometheus.DeployerMetrics] to count the
        deployer's requests in (its sink is put in front of the monitor), or None.
    poll_s
        Seconds between two checks of the alias.
    **options
        Passed to [`OnlineDeployer`][modeldeploy.OnlineDeployer] (the keys of
        `OnlineOptions` but ``monitor``:
        ``max_batch_size``, ``timeout_ms``, ``fallback``, ...).

    Examples
    --------
    >>> from fastapi import FastAPI
    >>> service = ModelService("model-registry", "churn")
    >>> app = FastAPI(lifespan=service.lifespan)
    >>> app.include_router(service.router(), prefix="/churn")
    >>> service.ready
    False
    """

    def __init__(
        self,
        registry: ModelRegistry | str | os.PathLike[str],
        name: str,
        alias: str = DEFAULT_ALIAS,
        *,
        monitor: Monitor | bool | None = True,
        monitor_state: str | os.PathLike[str] | None = None,
        metrics: Any = None,
        poll_s: float = DEFAULT_POLL_S,
        **options: Any,
    ) -> None:
        if not isinstance(registry, (ModelRegistry, str, os.PathLike)):
            raise InvalidParameterError(
                f"The 'registry' parameter of {_OWNER} must be a ModelRegistry or where one "
                f"lives (a path or URL). Got {type(registry).__name__} instead."
            )
        for value, what in ((name, "name"), (alias, "alias")):
            if not isinstance(value, str) or not value:
                raise InvalidParameterError(
                    f"The '{what}' parameter of {_OWNER} must be a non-empty str. Got "
                    f"{value!r} instead."
                )
        if not (monitor is None or isinstance(monitor, (bool, Monitor))):
            raise InvalidParameterError(
                f"The 'monitor' parameter of {_OWNER} must be True, a Monitor or None. Got "
                f"{type(monitor).__name__} instead."
            )
        self.registry_location = registry
        self.name = name
        self.alias = alias
        self.monitor_option = monitor
        self.monitor_state = None if monitor_state is None else Path(monitor_state)
        self.metrics = metrics
        self.poll_s = poll_s
        self.options = options
        self._lock = threading.Lock()
        self._registry: ModelRegistry | None = None
        self._deployer: OnlineDeployer | None = None
        self._monitor: Monitor | None = None
        self._collector: Any = None

    # ------------------------------------------------------------------ life cycle

    def open(self) -> None:
        """Open the registry, build the monitor and start serving (loads and warms the model).

        Calling it again while open does nothing.
        """
        with self._lock:
            if self._deployer is not None:
                return
            location = self.registry_location
            registry = location if isinstance(location, ModelRegistry) else ModelRegistry(location)
            try:
                monitor = self._open_monitor(registry)
                sink: Any = monitor
                options = dict(self.options)
                if self.metrics is not None:
                    sink = self.metrics.sink(monitor, deployer=f"{self.name}@{self.alias}")
                    options.setdefault("on_event", sink.on_event)
                if sink is not None:
                    options["monitor"] = sink
                deployer = OnlineDeployer.follow(
                    registry,
                    self.name,
                    self.alias,
                    poll_s=self.poll_s,
                    **options,
                )
            except BaseException:
                registry.close()
                raise
            self._registry, self._monitor, self._deployer = registry, monitor, deployer
        logger.info("serving %s@%s: %s", self.name, self.alias, deployer.version)

    def _open_monitor(self, registry: ModelRegistry) -> Monitor | None:
        option = self.monitor_option
        if isinstance(option, Monitor):
            return option
        if not option:
            return None
        state = self.monitor_state
        if state is not None and state.exists():
            return Monitor.load(state)
        return Monitor.for_version(registry.get(self.name, alias=self.alias))

    def close(self) -> None:
        """Stop serving, hand what was served to the monitor (saving it to ``monitor_state``),
        and close the registry. Calling it twice is fine."""
        with self._lock:
            deployer, monitor, registry = self._deployer, self._monitor, self._registry
            self._deployer = self._monitor = self._registry = None
        if deployer is not None:
            deployer.close()
        if monitor is not None and self.monitor_state is not None:
            monitor.save(self.monitor_state)
        if registry is not None:
            registry.close()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """An app lifespan: [`open`][modeldeploy.integrations.fastapi.ModelService.open] at
        start-up, [`close`][modeldeploy.integrations.fastapi.ModelService.close] at shutdown (both
        off the event loop). Pass it as ``FastAPI(lifespan=service.lifespan)``, or enter it from
        your
        own lifespan: ``async with service.lifespan(app): yield``."""
        await asyncio.to_thread(self.open)
        try:
            yield
        finally:
            await asyncio.to_thread(self.close)

    # ------------------------------------------------------------------ state

    @property
    def ready(self) -> bool:
        """Whether a version is loaded, warm and serving."""
        return self._deployer is not None

    @property
    def deployer(self) -> OnlineDeployer:
        """The deployer ([`DeploymentError`][modeldeploy.exceptions.DeploymentError] before
        [`open`][modeldeploy.integrations.fastapi.ModelService.open])."""
        deployer = self._deployer
        if deployer is None:
            raise DeploymentError(
                f"{_OWNER} for {self.name}@{self.alias} is not open; open() it, or run the app "
                "with lifespan=service.lifespan."
            )
        return deployer

    @property
    def monitor(self) -> Monitor | None:
        """The monitor, once open (None without one)."""
        return self._monitor

    def __repr__(self) -> str:
        state = f"serving {self._deployer.version}" if self._deployer is not None else "closed"
        return f"{_OWNER}({self.name!r}, alias={self.alias!r}, {state})"

    # ------------------------------------------------------------------ HTTP

    def router(self, *, tags: Sequence[str] | None = None) -> APIRouter:
        """An ``APIRouter`` with the service's endpoints; include it with the prefix you like
        (``app.include_router(service.router(), prefix="/churn")``)."""
        router = APIRouter(tags=list(tags) if tags is not None else [self.name])
        router.add_api_route(
            "/predict", self._predict, methods=["POST"], response_model=PredictResponse,
            summary=f"Predict with {self.name}@{self.alias}",
        )  # fmt: skip
        router.add_api_route(
            "/labels", self._labels, methods=["POST"], summary="Send true labels by id"
        )
        router.add_api_route(
            "/metrics", self._metrics, methods=["GET"], summary="Prometheus metrics",
            response_class=Response,
        )  # fmt: skip
        router.add_api_route("/health", self._health, methods=["GET"], summary="Liveness")
        router.add_api_route("/ready", self._ready, methods=["GET"], summary="Readiness")
        return router

    def _serving(self) -> OnlineDeployer:
        deployer = self._deployer
        if deployer is None:
            raise HTTPException(503, detail=f"{self.name}@{self.alias} is not serving yet.")
        return deployer

    async def _predict(self, request: PredictRequest) -> PredictResponse:
        deployer = self._serving()
        rows = request.rows
        ids: list[str | int] = (
            list(request.ids) if request.ids is not None else [uuid.uuid4().hex for _ in rows]
        )
        if len(ids) != len(rows):
            raise HTTPException(
                422, detail=f"Expected one id per row ({len(rows)}); got {len(ids)} ids."
            )
        try:  # the version that answered, also during a swap or a canary
            out, version = await deployer.apredict(
                rows, ids=ids, key=request.key, return_version=True
            )
        except SchemaError as exc:
            raise HTTPException(
                422, detail={"message": str(exc), "column": exc.column, "row": exc.row}
            ) from exc
        except PredictionTimeoutError as exc:
            raise HTTPException(504, detail=str(exc)) from exc
        except DeploymentError as exc:
            raise HTTPException(503, detail=str(exc)) from exc
        return PredictResponse(version=version, ids=ids, predictions=out.tolist())

    async def _labels(self, request: LabelsRequest) -> dict[str, int]:
        deployer = self._serving()
        monitor = self._monitor
        if monitor is None:
            raise HTTPException(404, detail=f"{_OWNER} {self.name} has no monitor to label.")
        if len(request.ids) != len(request.y_true):
            raise HTTPException(
                422,
                detail=f"Expected one label per id ({len(request.ids)}); got "
                f"{len(request.y_true)} labels.",
            )
        # Predictions reach the monitor off the hot path: hand over what was served first.
        await asyncio.to_thread(deployer.flush)
        return await asyncio.to_thread(monitor.log_labels, request.ids, request.y_true)

    async def _metrics(self) -> Response:
        from modeldeploy.integrations import prometheus  # needs the [prometheus] extra

        collectors = []
        monitor = self._monitor
        if monitor is not None:
            if self._collector is None or self._collector.monitor is not monitor:
                self._collector = prometheus.MonitorCollector(
                    monitor, labels={"service": f"{self.name}@{self.alias}"}
                )
            collectors.append(self._collector)
        registry = None if self.metrics is None else self.metrics.registry
        body, content_type = await asyncio.to_thread(
            prometheus.exposition, *collectors, registry=registry
        )
        return Response(content=body, media_type=content_type)

    async def _health(self) -> dict[str, str]:
        return {"status": "ok"}

    async def _ready(self, response: Response) -> dict[str, Any]:
        deployer = self._deployer
        if deployer is None:
            response.status_code = 503
            return {"ready": False, "model": self.name, "alias": self.alias, "version": None}
        return {"ready": True, "model": self.name, "alias": self.alias, "version": deployer.version}
