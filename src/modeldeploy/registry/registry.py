"""ModelRegistry: numbered, described, verified model versions with aliases and history."""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from functools import lru_cache
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

from modeldeploy import _validation as val
from modeldeploy._config import (
    DEFAULT_ALIAS,
    DEFAULT_CACHE_SIZE,
    DEFAULT_FORMAT,
    DEFAULT_REGISTRY_ROOT,
)
from modeldeploy.exceptions import (
    EnvironmentMismatchWarning,
    IntegrityError,
    InvalidParameterError,
    SchemaError,
    SerializationError,
)
from modeldeploy.registry.formats import Serializer, get_format, register_format
from modeldeploy.registry.signature import Signature
from modeldeploy.registry.stores import (
    ArtifactStore,
    LocalArtifactStore,
    MetadataStore,
    Record,
    SQLiteMetadataStore,
    utcnow,
)
from modeldeploy.registry.version import Event, ModelVersion, to_json_friendly

__all__ = ["History", "ModelRegistry"]

logger = logging.getLogger("modeldeploy.registry")
_OWNER = "ModelRegistry"


class History(list[Event]):
    """A model's events, oldest first: a list with a notebook table."""

    def _repr_html_(self) -> str:
        head = "".join(
            f"<th>{h}</th>" for h in ("time (UTC)", "event", "version", "alias", "before", "reason")
        )
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape('' if v is None else str(v))}</td>"
                for v in (
                    f"{e.time:%Y-%m-%d %H:%M:%S}",
                    e.kind,
                    e.version,
                    e.alias,
                    e.previous,
                    e.reason,
                )
            )
            + "</tr>"
            for e in self
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


class ModelRegistry:
    """A versioned model store in a local folder: no server, safe from many processes.

    Metadata (versions, aliases, history) lives in an SQLite database and artifacts in files
    named by their sha256, both under ``root``. Every version gets the next integer number of
    its model (never reused), its artifact's sha256, the library versions it was saved with, and
    what you tell it (metrics, params, tags, description, parent, and a :class:`Signature`
    inferred from ``sample=``). Aliases such as ``"production"`` move atomically and every move
    is kept, so :meth:`rollback` knows where to go back to.

    Parameters
    ----------
    root
        The registry folder (created on first use).
    metadata, artifacts
        Replacements for the embedded stores (:class:`~modeldeploy.registry.stores.MetadataStore`
        and :class:`~modeldeploy.registry.stores.ArtifactStore`), e.g. a server database or an
        object store. Default: SQLite at ``root/registry.db`` and files under
        ``root/artifacts``.
    cache_size
        How many loaded models to keep in memory (keyed by sha256, least recently used first out).
    formats
        Extra :class:`~modeldeploy.registry.formats.Serializer` instances to register.
    on_event
        A callable receiving each :class:`Event` this registry object records.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from modeldeploy import ModelRegistry
    >>> X = np.random.default_rng(0).normal(size=(100, 3)); y = (X[:, 0] > 0).astype(int)
    >>> reg = ModelRegistry(tempfile.mkdtemp())
    >>> v = reg.register("churn", LogisticRegression().fit(X, y), sample=X, metrics={"f1": 0.9})
    >>> v.version, v.signature.n_features
    (1, 3)
    >>> reg.promote("churn", 1, alias="production", reason="first model").aliases
    ('production',)
    >>> reg.load("churn", alias="production").predict(X[:2]).shape
    (2,)
    >>> [e.kind for e in reg.history("churn")]
    ['registered', 'promoted']
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = DEFAULT_REGISTRY_ROOT,
        *,
        metadata: MetadataStore | None = None,
        artifacts: ArtifactStore | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        formats: Iterable[Serializer] = (),
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.root = Path(root)
        self.cache_size = val.check_int(cache_size, "cache_size", _OWNER, min_value=0)
        self.on_event = on_event
        self._metadata = metadata
        self._artifacts = artifacts
        self._init_lock = threading.Lock()
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._cache_lock = threading.Lock()
        for serializer in formats:
            register_format(serializer)

    # ------------------------------------------------------------------ stores (lazy)

    @property
    def metadata(self) -> MetadataStore:
        """The metadata store (opened on first use)."""
        if self._metadata is None:
            with self._init_lock:
                if self._metadata is None:
                    self._metadata = SQLiteMetadataStore(self.root / "registry.db")
        return self._metadata

    @property
    def artifacts(self) -> ArtifactStore:
        """The artifact store (created on first use)."""
        if self._artifacts is None:
            with self._init_lock:
                if self._artifacts is None:
                    self._artifacts = LocalArtifactStore(self.root / "artifacts")
        return self._artifacts

    def close(self) -> None:
        """Close this thread's database connection and empty the model cache."""
        if self._metadata is not None:
            self._metadata.close()
        with self._cache_lock:
            self._cache.clear()

    def __enter__(self) -> ModelRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ registering

    def register(
        self,
        name: str,
        model: Any,
        *,
        sample: Any = None,
        signature: Signature | None = None,
        metrics: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        description: str = "",
        parent: int | ModelVersion | None = None,
        format: str = DEFAULT_FORMAT,
    ) -> ModelVersion:
        """Store ``model`` as the next version of ``name``.

        Parameters
        ----------
        name
            The model's name: letters, digits, ``.``, ``_``, ``-``.
        model
            Any object with ``predict(X)``.
        sample
            Some training rows (array, DataFrame, list of dicts) to infer the
            :class:`Signature` from: input validation and the drift baseline.
        signature
            A ready :class:`Signature` instead of ``sample``.
        metrics, params, tags
            JSON-friendly mappings (numpy scalars are converted).
        description
            Free text; also the reason of the ``registered`` event.
        parent
            The version of the same model this one derives from (lineage).
        format
            ``"joblib"`` (default), ``"skops"``, or the name of a registered serializer.

        Returns
        -------
        ModelVersion
            The stored record.

        Raises
        ------
        InvalidParameterError
            For a bad name, a model without ``predict``, a sample and a signature together.
        SchemaError
            When the sample has another number of features than the model expects.
        SerializationError
            When the format cannot write the model.
        """
        val.check_name(name, "name", _OWNER)
        if not callable(getattr(model, "predict", None)):
            raise InvalidParameterError(
                f"The 'model' parameter of {_OWNER}.register must have a predict(X) method. "
                f"Got {type(model).__name__!r} instead."
            )
        if sample is not None and signature is not None:
            raise InvalidParameterError(
                f"Pass either 'sample' or 'signature' to {_OWNER}.register, not both."
            )
        if sample is not None:
            signature = Signature.infer(sample)
        if signature is not None and not isinstance(signature, Signature):
            raise InvalidParameterError(
                f"The 'signature' parameter of {_OWNER}.register must be a Signature or None. "
                f"Got {type(signature).__name__!r} instead."
            )
        expected = getattr(model, "n_features_in_", None)
        if signature is not None and isinstance(expected, int) and expected != signature.n_features:
            raise SchemaError(
                f"The model expects {expected} features but the sample has "
                f"{signature.n_features}. Pass the rows the model was trained on as 'sample'."
            )
        parent_version = self._parent(name, parent)
        serializer = get_format(format)
        description = str(description)
        scratch = self.artifacts.scratch_dir()
        staging = Path(tempfile.mkdtemp(prefix="register-", dir=scratch))
        try:
            path = staging / "model"
            try:
                serializer.dump(model, path)
            except Exception as exc:
                raise SerializationError(
                    f"Could not save the model with the {format!r} format: {exc}. Try another "
                    "format, or register a Serializer for this kind of model."
                ) from exc
            sha256, size = _hash_file(path)
            key = _artifact_key(sha256)
            self.artifacts.put(key, path)
            record: Record = {
                "created_at": utcnow(),
                "sha256": sha256,
                "size": size,
                "format": format,
                "signature": json.dumps(signature.to_dict()) if signature is not None else None,
                "metrics": to_json_friendly(metrics),
                "params": to_json_friendly(params),
                "tags": to_json_friendly(tags),
                "description": description,
                "parent": parent_version,
                "environment": _environment(model),
            }

            def ensure_artifact() -> None:
                # Inside the transaction: a concurrent delete of an identical artifact may have
                # removed the file since the put above.
                if not self.artifacts.exists(key):
                    self.artifacts.put(key, path)

            event = self.metadata.add_version(name, record, before_commit=ensure_artifact)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._emit(event)
        return self.get(name, int(event["version"]))

    def _parent(self, name: str, parent: int | ModelVersion | None) -> int | None:
        if parent is None:
            return None
        if isinstance(parent, ModelVersion):
            if parent.name != name:
                raise InvalidParameterError(
                    f"The 'parent' of a version of {name!r} must be a version of the same model."
                    f" Got {parent.ref} instead."
                )
            return parent.version
        number = val.check_int(parent, "parent", _OWNER, min_value=1)
        self.metadata.get_version(name, number)  # raises when unknown
        return number

    # ------------------------------------------------------------------ reading

    def get(
        self, name: str, version: int | None = None, *, alias: str | None = None
    ) -> ModelVersion:
        """One version's record: by number, by alias, or the latest when neither is given.

        Raises
        ------
        ModelNotFoundError, VersionNotFoundError, AliasNotFoundError
            With close names suggested.
        """
        return self._version(self._record(name, version, alias), self.metadata.aliases(name))

    def _record(self, name: str, version: int | None, alias: str | None) -> Record:
        if version is not None and alias is not None:
            raise InvalidParameterError(
                f"Pass either 'version' or 'alias' to {_OWNER}.get/load, not both."
            )
        if alias is not None:
            return self.metadata.get_alias(name, alias)
        if version is not None:
            return self.metadata.get_version(
                name, val.check_int(version, "version", _OWNER, min_value=1)
            )
        return self.metadata.latest_version(name)

    def _version(self, rec: Record, aliases: Mapping[str, int]) -> ModelVersion:
        return ModelVersion(
            name=rec["name"],
            version=int(rec["version"]),
            created_at=datetime.fromisoformat(rec["created_at"]),
            sha256=rec["sha256"],
            size=int(rec["size"]),
            format=rec["format"],
            signature=_parse_signature(rec["signature"]),
            metrics=rec["metrics"],
            params=rec["params"],
            tags=rec["tags"],
            description=rec["description"],
            parent=rec["parent"],
            environment=rec["environment"],
            aliases=tuple(sorted(a for a, v in aliases.items() if v == rec["version"])),
            _registry=self,
        )

    def load(self, name: str, version: int | None = None, *, alias: str | None = None) -> Any:
        """The model object of a version (by number, alias, or the latest).

        The artifact's sha256 is checked before anything is deserialized; loaded models are
        cached in-process by sha256, so a repeated load costs microseconds. The cache hands out
        the same object each time: do not modify it.

        Raises
        ------
        IntegrityError
            When the artifact is missing or its sha256 differs; nothing is loaded.
        """
        rec = self._record(name, version, alias)
        return self._load_artifact(
            rec["name"], int(rec["version"]), rec["sha256"], rec["format"], rec["environment"]
        )

    def _load_artifact(
        self,
        name: str,
        version: int,
        sha256: str,
        format: str,
        environment: Mapping[str, str] | None = None,
    ) -> Any:
        with self._cache_lock:
            if sha256 in self._cache:
                self._cache.move_to_end(sha256)
                return self._cache[sha256]
        try:
            data = self.artifacts.read(_artifact_key(sha256))
        except FileNotFoundError:
            raise IntegrityError(
                f"The artifact of {name}:{version} (sha256 {sha256[:12]}...) is missing from the "
                "artifact store. Restore it from a backup, or delete this version with "
                f"registry.delete_version({name!r}, {version}).",
                name=name,
                version=version,
            ) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise IntegrityError(
                f"The artifact of {name}:{version} is corrupt: its sha256 is {actual[:12]}..., "
                f"but {sha256[:12]}... was recorded at registration. Nothing was loaded. Restore "
                "the file from a backup or register the model again.",
                name=name,
                version=version,
            )
        if environment is None:
            environment = self.metadata.get_version(name, version)["environment"]
        _warn_environment(name, version, environment)
        try:
            model = get_format(format).load(data)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(
                f"Could not load {name}:{version} with the {format!r} format: {exc}. Check that "
                "the libraries it was saved with are installed "
                f"({', '.join(f'{k} {v}' for k, v in environment.items())})."
            ) from exc
        if self.cache_size:
            with self._cache_lock:
                self._cache[sha256] = model
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return model

    def models(self) -> list[str]:
        """Names of the registered models, sorted."""
        return [r["name"] for r in self.metadata.list_models()]

    def versions(self, name: str) -> list[ModelVersion]:
        """Every existing version of a model, oldest first."""
        aliases = self.metadata.aliases(name)
        return [self._version(r, aliases) for r in self.metadata.list_versions(name)]

    def aliases(self, name: str) -> dict[str, int]:
        """Alias -> version number, for one model."""
        self.metadata.list_versions(name)  # ModelNotFoundError for an unknown model
        return self.metadata.aliases(name)

    def history(self, name: str) -> History:
        """Every event of a model, oldest first: registrations, alias moves, deletes, custom."""
        return History(_event(r) for r in self.metadata.events(name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.models()

    # ------------------------------------------------------------------ aliases

    def promote(
        self,
        name: str,
        version: int | ModelVersion,
        *,
        alias: str = DEFAULT_ALIAS,
        reason: str = "",
    ) -> ModelVersion:
        """Point ``alias`` at ``version`` (atomically), recording the move and its reason."""
        number = version.version if isinstance(version, ModelVersion) else version
        number = val.check_int(number, "version", _OWNER, min_value=1)
        val.check_name(alias, "alias", _OWNER)
        self._emit(self.metadata.move_alias(name, alias, number, reason=reason, kind="promoted"))
        return self.get(name, number)

    def rollback(self, name: str, *, alias: str = DEFAULT_ALIAS, reason: str = "") -> ModelVersion:
        """Move ``alias`` back to the version it pointed at before its last move.

        Repeated rollbacks keep going back (v3 -> v2 -> v1); versions deleted since are skipped.

        Raises
        ------
        OperationRefusedError
            When the alias never pointed at another existing version.
        """
        val.check_name(alias, "alias", _OWNER)
        event = self._emit(
            self.metadata.move_alias(name, alias, None, reason=reason, kind="rolled_back")
        )
        return self.get(name, int(event.version or 0))

    def delete_alias(self, name: str, alias: str, *, reason: str = "") -> None:
        """Remove an alias from a model."""
        self._emit(self.metadata.move_alias(name, alias, None, reason=reason, kind="alias_deleted"))

    # ------------------------------------------------------------------ changing versions

    def delete_version(self, name: str, version: int, *, reason: str = "") -> None:
        """Delete a version's record and, when no other version shares it, its artifact.

        Its number is never given to another version.

        Raises
        ------
        OperationRefusedError
            When an alias points at the version: move or delete the alias first.
        """
        number = val.check_int(version, "version", _OWNER, min_value=1)
        self._emit(
            self.metadata.delete_version(
                name,
                number,
                reason=reason,
                on_unreferenced=lambda sha: self.artifacts.remove(_artifact_key(sha)),
            )
        )

    def set_metrics(self, name: str, version: int, metrics: Mapping[str, Any]) -> ModelVersion:
        """Merge ``metrics`` into a version's recorded metrics (e.g. a later holdout score)."""
        self._emit(
            self.metadata.update_version(
                name, version, metrics=to_json_friendly(metrics), tags=None
            )
        )
        return self.get(name, version)

    def set_tags(self, name: str, version: int, tags: Mapping[str, Any]) -> ModelVersion:
        """Merge ``tags`` into a version's recorded tags."""
        self._emit(
            self.metadata.update_version(name, version, metrics=None, tags=to_json_friendly(tags))
        )
        return self.get(name, version)

    def record_event(
        self,
        name: str,
        kind: str,
        *,
        version: int | None = None,
        alias: str | None = None,
        reason: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> Event:
        """Add a custom event (a swap, a retrain decision, ...) to a model's history."""
        val.check_name(kind, "kind", f"{_OWNER}.record_event")
        return self._emit(
            self.metadata.add_event(
                name,
                kind,
                version=version,
                alias=alias,
                reason=reason,
                details=to_json_friendly(details),
            )
        )

    # ------------------------------------------------------------------ attachments

    def attach(self, name: str, version: int, key: str, data: bytes) -> str:
        """Store ``data`` next to a version under ``key`` (replacing an older one); return its
        sha256.

        For artifacts derived from a version that replicas should not recompute, such as a
        compiled fast path. Deleting the version deletes its attachments.
        """
        val.check_name(key, "key", f"{_OWNER}.attach")
        number = val.check_int(version, "version", f"{_OWNER}.attach", min_value=1)
        sha256 = hashlib.sha256(data).hexdigest()
        staging = Path(tempfile.mkdtemp(prefix="attach-", dir=self.artifacts.scratch_dir()))
        try:
            path = staging / "data"
            path.write_bytes(data)
            artifact = _artifact_key(sha256)
            self.artifacts.put(artifact, path)

            def ensure_artifact() -> None:
                if not self.artifacts.exists(artifact):
                    self.artifacts.put(artifact, path)

            self.metadata.set_attachment(
                name, number, key, sha256, len(data), before_commit=ensure_artifact
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return sha256

    def attachment(self, name: str, version: int, key: str) -> bytes | None:
        """The bytes attached to a version under ``key`` (sha256-verified), or None.

        Raises
        ------
        IntegrityError
            When the stored bytes are missing or differ from what was attached.
        """
        rec = self.metadata.get_attachment(name, version, key)
        if rec is None:
            return None
        try:
            data = self.artifacts.read(_artifact_key(rec["sha256"]))
        except FileNotFoundError:
            raise IntegrityError(
                f"The attachment {key!r} of {name}:{version} is missing from the artifact store.",
                name=name,
                version=version,
            ) from None
        if hashlib.sha256(data).hexdigest() != rec["sha256"]:
            raise IntegrityError(
                f"The attachment {key!r} of {name}:{version} is corrupt (sha256 differs from the "
                "one recorded). Attach it again.",
                name=name,
                version=version,
            )
        return data

    # ------------------------------------------------------------------ maintenance

    def verify(self, name: str | None = None) -> list[dict[str, Any]]:
        """Recompute the sha256 of every artifact (of one model, or all); return the problems.

        Each problem is a dict with ``name``, ``version``, ``sha256`` and ``problem``
        (``"missing"`` or ``"sha256 mismatch"``). An empty list means every artifact is intact.
        """
        names = [name] if name is not None else self.models()
        problems: list[dict[str, Any]] = []
        for model_name in names:
            for rec in self.metadata.list_versions(model_name):
                try:
                    data = self.artifacts.read(_artifact_key(rec["sha256"]))
                except FileNotFoundError:
                    problem = "missing"
                else:
                    problem = (
                        ""
                        if hashlib.sha256(data).hexdigest() == rec["sha256"]
                        else ("sha256 mismatch")
                    )
                if problem:
                    problems.append(
                        {
                            "name": model_name,
                            "version": rec["version"],
                            "sha256": rec["sha256"],
                            "problem": problem,
                        }
                    )
        return problems

    def gc(self, *, older_than_s: float = 3600.0) -> dict[str, int]:
        """Remove artifacts no version uses and leftovers of interrupted writes.

        Only files older than ``older_than_s`` are touched, so a registration running in another
        process right now keeps its artifact. Returns counts of what was removed.
        """
        older_than_s = val.check_float(older_than_s, "older_than_s", f"{_OWNER}.gc", min_value=0)
        used = {_artifact_key(s) for s in self.metadata.referenced_artifacts()}
        orphans = 0
        root = getattr(self.artifacts, "root", None)
        cutoff = datetime.now().timestamp() - older_than_s
        for key in list(self.artifacts.keys()):
            if key in used:
                continue
            if isinstance(root, Path) and (root / key).stat().st_mtime >= cutoff:
                continue
            self.artifacts.remove(key)
            orphans += 1
        leftovers = self.artifacts.cleanup(older_than_s)
        return {"orphan_artifacts": orphans, "leftover_files": leftovers}

    # ------------------------------------------------------------------ events

    def _emit(self, record: Record) -> Event:
        """Log an event the metadata store recorded and hand it to ``on_event``."""
        event = _event(record)
        logger.info(
            "%s %s%s%s%s",
            event.kind,
            event.name,
            f" v{event.version}" if event.version is not None else "",
            f" @{event.alias} (was {event.previous})" if event.alias else "",
            f": {event.reason}" if event.reason else "",
            extra={
                "model": event.name,
                "version": event.version,
                "alias": event.alias,
                "event": event.kind,
            },
        )
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                logger.exception("on_event callback failed for %r", event)
        return event

    # ------------------------------------------------------------------ display

    def __repr__(self) -> str:
        try:
            models = self.metadata.list_models()
        except Exception:  # pragma: no cover - a repr must not raise
            return f"ModelRegistry({str(self.root)!r})"
        return f"ModelRegistry({str(self.root)!r}, {len(models)} models)"

    def _repr_html_(self) -> str:
        head = "".join(
            f"<th>{h}</th>" for h in ("model", "versions", "latest", "aliases", "created (UTC)")
        )
        rows = []
        for m in self.metadata.list_models():
            aliases = ", ".join(f"{a}→v{v}" for a, v in self.metadata.aliases(m["name"]).items())
            cells = (
                m["name"],
                m["versions"],
                m["latest"] or "-",
                aliases or "-",
                m["created_at"][:19].replace("T", " "),
            )
            rows.append(
                "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"
            )
        return (
            f"<table><caption>ModelRegistry at {html.escape(str(self.root))}</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )


# ---------------------------------------------------------------------- helpers


def _artifact_key(sha256: str) -> str:
    return f"sha256/{sha256[:2]}/{sha256}"


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


@lru_cache(maxsize=256)
def _parse_signature(text: str | None) -> Signature | None:
    return Signature.from_dict(json.loads(text)) if text else None


def _event(rec: Record) -> Event:
    return Event(
        id=int(rec["id"]),
        name=rec["name"],
        time=datetime.fromisoformat(rec["time"]),
        kind=rec["kind"],
        version=rec["version"],
        alias=rec["alias"],
        previous=rec["previous"],
        reason=rec["reason"],
        details=rec["details"],
    )


def _environment(model: Any) -> dict[str, str]:
    import joblib
    import numpy
    import sklearn

    env = {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "joblib": joblib.__version__,
        "platform": sys.platform,
    }
    top = type(model).__module__.split(".")[0]
    if top not in ("sklearn", "numpy", "builtins", "__main__", "modeldeploy"):
        with contextlib.suppress(PackageNotFoundError):
            env[top] = dist_version(top)
    return env


def _warn_environment(name: str, version: int, saved: Mapping[str, str]) -> None:
    import sklearn

    now = {
        "python": ".".join(platform.python_version().split(".")[:2]),
        "scikit-learn": sklearn.__version__,
    }
    then = {
        "python": ".".join(str(saved.get("python", "")).split(".")[:2]),
        "scikit-learn": saved.get("scikit-learn", ""),
    }
    diffs = [f"{k} {then[k]} (now {now[k]})" for k in now if then[k] and then[k] != now[k]]
    if diffs:
        warnings.warn(
            f"{name}:{version} was saved with {', '.join(diffs)}. Its predictions may differ or "
            "loading may fail; retrain or re-register it with the current versions.",
            EnvironmentMismatchWarning,
            stacklevel=3,
        )
