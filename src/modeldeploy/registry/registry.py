"""ModelRegistry: numbered, described, verified model versions with aliases and history."""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from modeldeploy import _validation as val
from modeldeploy._clock import as_clock, to_iso
from modeldeploy._config import (
    DEFAULT_ALIAS,
    DEFAULT_CACHE_SIZE,
    DEFAULT_FORMAT,
    DEFAULT_REGISTRY_ROOT,
)
from modeldeploy.exceptions import InvalidParameterError, SchemaError
from modeldeploy.registry._artifacts import ArtifactStore
from modeldeploy.registry._backends import Backends
from modeldeploy.registry._cache import ModelCache
from modeldeploy.registry._environment import environment_of, warn_environment
from modeldeploy.registry._host_cache import HostArtifactCache
from modeldeploy.registry._metadata import MetadataStore, Record
from modeldeploy.registry._records import to_event, to_model_version
from modeldeploy.registry._signing import Signer
from modeldeploy.registry._vault import ArtifactVault, deserialize
from modeldeploy.registry.formats import Serializer, get_format, register_format
from modeldeploy.registry.history import History
from modeldeploy.registry.signature import Signature
from modeldeploy.registry.version import Event, ModelVersion, to_json_friendly, to_metrics, to_tags
from modeldeploy.typing import Clock

__all__ = ["ModelRegistry"]

logger = logging.getLogger("modeldeploy.registry")

_OWNER = "ModelRegistry"


class ModelRegistry:
    """A versioned model store: a local folder by default, or servers shared by a fleet.

    By default metadata (versions, aliases, history) lives in an SQLite database and artifacts
    in files named by their sha256, both under ``root``: no server, safe from many processes of
    one host. Hosts of a fleet share ``ModelRegistry("postgresql://...",
    artifacts="s3://bucket/prefix")``: PostgreSQL for metadata, any S3-API object store for
    artifacts, with the same behaviour (see the "Running a fleet" guide). Every version gets the
    next integer number of its model (never reused), its artifact's sha256, the library versions
    it was saved with, and what you tell it (metrics, params, tags, description, parent, and a
    [`Signature`][modeldeploy.Signature] inferred from ``sample=``). Aliases such as
    ``"production"`` move atomically and every move is kept, so
    [`rollback`][modeldeploy.ModelRegistry.rollback] knows where to go back to.

    Parameters
    ----------
    root
        The registry folder (created on first use), or a PostgreSQL URL
        (``postgresql://user@host:port/db``, extra ``[postgres]``) whose password, if any, comes
        from the environment (``PGPASSWORD``, ``~/.pgpass``) rather than from code. A server
        URL needs ``artifacts=``. ``registry.root`` and the repr show it without a password.
    metadata
        A [`MetadataStore`][modeldeploy.registry.stores.MetadataStore] to use instead of the one
        ``root`` names. Default: SQLite at ``root/registry.db``, or PostgreSQL for a URL.
    artifacts
        Where artifacts go: an ``s3://bucket/prefix`` URL (extra ``[s3]``; credentials and
        endpoint from the usual ``AWS_*`` variables), a folder, or an
        [`ArtifactStore`][modeldeploy.registry.stores.ArtifactStore]. Default: ``root/artifacts``
        for a folder registry; required for a server one.
    artifact_cache
        A folder of this host where artifacts of a remote store are kept after their first
        fetch, so that later processes of the host load them at local-file speed (sha256
        verified on every load; a corrupt copy is dropped and fetched again). Default (None):
        on for an ``s3://`` store, at ``$MODELDEPLOY_ARTIFACT_CACHE`` if set (``off`` turns it
        off), else ``${XDG_CACHE_HOME:-~/.cache}/modeldeploy/artifacts``; off for a folder
        store. ``False`` turns it off; ``True`` turns it on for any store; a
        [`HostArtifactCache`][modeldeploy.registry.stores.HostArtifactCache] sets the size limit
        (default 2 GiB, least recently used first out).
    cache_size
        How many loaded models to keep in memory (keyed by sha256, least recently used first out).
    formats
        Extra [`Serializer`][modeldeploy.registry.formats.Serializer] instances to register.
    on_event
        A callable receiving each [`Event`][modeldeploy.Event] this registry object records.
    clock
        Where the registry reads time (a [`Clock`][modeldeploy.typing.Clock], e.g.
        [`FakeClock`][modeldeploy.testing.FakeClock]): ``created_at`` of versions and the time of
        every history event. Default: the system clock. A
        [`RetrainPolicy`][modeldeploy.RetrainPolicy] over this registry uses the same clock unless
        given its own. Processes or hosts sharing one registry folder or database compare each
        other's stamps, so their clocks must agree (NTP).
    signing_key
        A secret (bytes or str, at least 16 bytes) kept *outside* the registry, or a list of
        them with the signing key first and older keys still accepted (rotation). Default: the
        environment variable ``MODELDEPLOY_SIGNING_KEYS`` (comma-separated) or
        ``MODELDEPLOY_SIGNING_KEY``; none set means no signing. With a key, every version and
        alias move is signed (HMAC-SHA256), and [`load`][modeldeploy.ModelRegistry.load],
        [`get`][modeldeploy.ModelRegistry.get] by alias and
        [`verify`][modeldeploy.ModelRegistry.verify] refuse records that are unsigned or badly
        signed: someone who can write the registry but lacks the key can no longer swap an artifact
        or move an alias unnoticed. Sign older records with
        [`sign`][modeldeploy.ModelRegistry.sign].

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
        artifacts: ArtifactStore | str | os.PathLike[str] | None = None,
        artifact_cache: HostArtifactCache | str | os.PathLike[str] | bool | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        formats: Iterable[Serializer] = (),
        on_event: Callable[[Event], None] | None = None,
        clock: Clock | None = None,
        signing_key: bytes | str | Sequence[bytes | str] | None = None,
    ) -> None:
        self._backends = Backends.from_config(root, metadata, artifacts, _OWNER, artifact_cache)
        self.clock = as_clock(clock, _OWNER)
        self._models = ModelCache(val.check_int(cache_size, "cache_size", _OWNER, min_value=0))
        # The key itself is kept only inside the signer, so no repr or attribute shows it.
        self._signer = Signer.from_config(signing_key, _OWNER)
        self.on_event = on_event
        self._vault = ArtifactVault(self._backends, self._stamp)
        for serializer in formats:
            register_format(serializer)

    # ------------------------------------------------------------------ stores (lazy)

    @property
    def root(self) -> Path | str:
        """The registry folder, or the server URL without its password."""
        return self._backends.root

    @property
    def metadata(self) -> MetadataStore:
        """The metadata store (opened on first use)."""
        return self._backends.metadata

    @property
    def artifacts(self) -> ArtifactStore:
        """The artifact store (created on first use)."""
        return self._backends.artifacts

    @property
    def artifact_cache(self) -> HostArtifactCache | None:
        """This host's copy of the artifact store's artifacts, or None when off."""
        return self._backends.cache

    @property
    def cache_size(self) -> int:
        """How many loaded models this registry keeps in memory."""
        return self._models.size

    @cache_size.setter
    def cache_size(self, size: int) -> None:
        self._models.size = val.check_int(size, "cache_size", _OWNER, min_value=0)

    @property
    def notifies(self) -> bool:
        """Whether [`wait_for_change`][modeldeploy.ModelRegistry.wait_for_change] wakes up as soon
        as an alias moves (PostgreSQL)."""
        return self.metadata.notifies

    def wait_for_change(self, name: str, timeout: float) -> bool:
        """Block until an alias of ``name`` may have moved, at most ``timeout`` seconds.

        Returns False when the store knows nothing moved. On PostgreSQL this is a LISTEN on the
        registry's channel, woken by every promotion, rollback or alias deletion of any host; on
        other stores it sleeps ``timeout`` and returns True (poll to find out). Followers
        (``OnlineDeployer.follow``) use it to swap within milliseconds of a promotion.
        """
        timeout = val.check_float(timeout, "timeout", f"{_OWNER}.wait_for_change", min_value=0)
        return self.metadata.wait_for_change(name, timeout)

    def close(self) -> None:
        """Close this thread's database connections and empty the model cache."""
        self._backends.close()
        self._models.clear()

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
            [`Signature`][modeldeploy.Signature] from: input validation and the drift baseline.
        signature
            A ready [`Signature`][modeldeploy.Signature] instead of ``sample``.
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
        signature = _check_signature(model, sample, signature)
        parent_version = self._parent_version(name, parent)
        serializer = get_format(format)
        # Checked before anything is written, so a bad value leaves no artifact behind.
        fields: Record = {
            "signature": json.dumps(signature.to_dict()) if signature is not None else None,
            "metrics": to_metrics(metrics, f"{_OWNER}.register"),
            "params": to_json_friendly(params),
            "tags": to_tags(tags, f"{_OWNER}.register"),
            "description": str(description),
            "parent": parent_version,
            "environment": environment_of(model),
        }
        event = self._vault.store_version(name, model, serializer, format, fields)
        self._emit(event)
        if self._signer is not None:
            self._emit(
                self._signer.sign_version(self.metadata, name, int(event["version"]), self._stamp())
            )
        return self.get(name, int(event["version"]))

    def _parent_version(self, name: str, parent: int | ModelVersion | None) -> int | None:
        """The number of a registration's ``parent`` version, checked to exist."""
        if parent is None:
            return None
        if isinstance(parent, ModelVersion):
            if parent.name != name:
                raise InvalidParameterError(
                    f"The 'parent' of a version of {name!r} must be a version of the same model."
                    f" Got {parent.ref} instead."
                )
            return parent.version
        number = val.check_version(parent, "parent", _OWNER)
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
            rec = self.metadata.get_alias(name, alias)
            if self._signer is not None:
                self._signer.require_alias(self.metadata, name, alias, rec)
            return rec
        if version is not None:
            return self.metadata.get_version(name, val.check_version(version, "version", _OWNER))
        return self.metadata.latest_version(name)

    def _version(self, rec: Record, aliases: Mapping[str, int]) -> ModelVersion:
        if self._signer is not None:
            self._signer.note_version(rec)  # so version.load() need not read the record again
        return to_model_version(rec, aliases, self)

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
        if self._signer is not None:
            self._signer.require_version(rec)
        return self._load_artifact(
            rec["name"],
            int(rec["version"]),
            rec["sha256"],
            rec["format"],
            rec["environment"],
            checked=True,
        )

    def _load_artifact(
        self,
        name: str,
        version: int,
        sha256: str,
        format: str,
        environment: Mapping[str, str] | None = None,
        *,
        checked: bool = False,
    ) -> Any:
        if self._signer is not None and not checked:
            self._signer.require_loadable(self.metadata, name, version, sha256, format)
        model = self._models.get(sha256)
        if model is not None:
            return model
        data = self._vault.read_artifact(name, version, sha256)
        if environment is None:
            environment = self.metadata.get_version(name, version)["environment"]
        warn_environment(name, version, environment)
        model = deserialize(data, name, version, format, environment)
        self._models.put(sha256, model)
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
        aliases = self.metadata.aliases(name)
        if not aliases:
            self.metadata.list_versions(name)  # ModelNotFoundError for an unknown model
        return aliases

    def history(self, name: str) -> History:
        """Every event of a model, oldest first: registrations, alias moves, deletes, custom."""
        return History(to_event(r) for r in self.metadata.events(name))

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
        number = val.check_version(number, "version", _OWNER)
        val.check_name(alias, "alias", _OWNER)
        move = self.metadata.move_alias(
            name, alias, number, reason=reason, kind="promoted", at=self._stamp()
        )
        self._emit(move)
        self._sign_move(move)
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
        move = self.metadata.move_alias(
            name, alias, None, reason=reason, kind="rolled_back", at=self._stamp()
        )
        event = self._emit(move)
        self._sign_move(move)
        return self.get(name, int(event.version or 0))

    def _sign_move(self, move: Record) -> None:
        """With a key, sign an alias move right after it (the ``signed`` event names it)."""
        if self._signer is not None:
            self._emit(self._signer.sign_move(self.metadata, move, self._stamp()))

    def delete_alias(self, name: str, alias: str, *, reason: str = "") -> None:
        """Remove an alias from a model."""
        self._emit(
            self.metadata.move_alias(
                name, alias, None, reason=reason, kind="alias_deleted", at=self._stamp()
            )
        )

    # ------------------------------------------------------------------ changing versions

    def delete_version(self, name: str, version: int, *, reason: str = "") -> None:
        """Delete a version's record and, when no other version shares it, its artifact.

        Its number is never given to another version.

        Raises
        ------
        OperationRefusedError
            When an alias points at the version: move or delete the alias first.
        """
        number = val.check_version(version, "version", _OWNER)
        self._emit(
            self.metadata.delete_version(
                name,
                number,
                reason=reason,
                on_unreferenced=self._vault.remove_artifact,
                at=self._stamp(),
            )
        )

    def set_metrics(self, name: str, version: int, metrics: Mapping[str, Any]) -> ModelVersion:
        """Merge ``metrics`` into a version's recorded metrics (e.g. a later holdout score)."""
        version = val.check_version(version, "version", f"{_OWNER}.set_metrics")
        metrics = to_metrics(metrics, f"{_OWNER}.set_metrics")
        self._emit(
            self.metadata.update_version(
                name, version, metrics=metrics, tags=None, at=self._stamp()
            )
        )
        return self.get(name, version)

    def set_tags(self, name: str, version: int, tags: Mapping[str, Any]) -> ModelVersion:
        """Merge ``tags`` into a version's recorded tags."""
        version = val.check_version(version, "version", f"{_OWNER}.set_tags")
        self._emit(
            self.metadata.update_version(
                name,
                version,
                metrics=None,
                tags=to_tags(tags, f"{_OWNER}.set_tags"),
                at=self._stamp(),
            )
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
        if version is not None:
            version = val.check_version(version, "version", f"{_OWNER}.record_event")
        if alias is not None:
            val.check_name(alias, "alias", f"{_OWNER}.record_event")
        return self._emit(
            self.metadata.add_event(
                name,
                kind,
                version=version,
                alias=alias,
                reason=reason,
                details=to_json_friendly(details),
                at=self._stamp(),
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
        number = val.check_version(version, "version", f"{_OWNER}.attach")
        return self._vault.attach(name, number, key, data)

    def attachment(self, name: str, version: int, key: str) -> bytes | None:
        """The bytes attached to a version under ``key`` (sha256-verified), or None.

        Raises
        ------
        IntegrityError
            When the stored bytes are missing or differ from what was attached.
        """
        number = val.check_version(version, "version", f"{_OWNER}.attachment")
        return self._vault.attachment(name, number, key)

    # ------------------------------------------------------------------ maintenance

    def verify(self, name: str | None = None) -> list[dict[str, Any]]:
        """Recompute the sha256 of every artifact (of one model, or all); return the problems.

        Each problem is a dict with ``name``, ``version``, ``sha256`` and ``problem``
        (``"missing"`` or ``"sha256 mismatch"``). An empty list means every artifact is intact.
        """
        names = [name] if name is not None else self.models()
        problems = self._vault.verify(names)
        if self._signer is not None:
            for model_name in names:
                problems.extend(self._signer.problems(self.metadata, model_name))
        return problems

    def sign(
        self, name: str | None = None, version: int | None = None, *, force: bool = False
    ) -> list[dict[str, Any]]:
        """Sign the records that are unsigned or signed with an older key, with this
        registry's key: versions registered before a key was set, and the latest move of each
        alias pointing at them.

        Signing vouches for the records *as they are now*: run
        [`verify`][modeldeploy.ModelRegistry.verify] first. After a key rotation
        (``signing_key=[new, old]``) this re-signs everything with the new key; then the old key can
        be dropped.

        Parameters
        ----------
        name
            One model, or every model when None.
        version
            One version of ``name`` (and the aliases on it), or all of them when None.
        force
            Also re-sign records whose signature is wrong (signed by a key that is gone, or
            changed since): only after checking them.

        Returns
        -------
        list of dict
            One per signed record: ``name``, ``version``, ``alias`` (None for a version) and
            ``was`` (``"unsigned"``, ``"signed with an older key"`` or ``"bad signature"``).

        Raises
        ------
        AuthenticityError
            When a signature is wrong (without ``force``) or an alias points where its history
            does not say; nothing is signed then.
        InvalidParameterError
            When the registry has no signing key.
        """
        if self._signer is None:
            raise InvalidParameterError(
                f"{_OWNER}.sign needs a signing key. Got none instead: pass "
                f"{_OWNER}(..., signing_key=KEY) or set $MODELDEPLOY_SIGNING_KEY."
            )
        if version is not None:
            if name is None:
                raise InvalidParameterError(
                    f"The 'version' parameter of {_OWNER}.sign needs 'name'. Got version="
                    f"{version!r} and name=None instead."
                )
            version = val.check_version(version, "version", f"{_OWNER}.sign")
        names = [name] if name is not None else self.models()
        signed: list[dict[str, Any]] = []
        for model_name in names:
            done, events = self._signer.sign_model(
                self.metadata, model_name, version, force=bool(force), at=self._stamp()
            )
            for event in events:
                self._emit(event)
            signed.extend(done)
        return signed

    def gc(self, *, older_than_s: float = 3600.0, force: bool = False) -> dict[str, int]:
        """Remove artifacts no version uses and leftovers of interrupted writes.

        Only files older than ``older_than_s`` are touched, so a registration running in another
        process right now keeps its artifact. Returns counts of what was removed.

        A metadata store that lists no artifact at all while artifacts exist looks like a lost
        or replaced database, not like garbage: ``gc`` then refuses and deletes nothing, unless
        ``force=True``. An unreadable database raises before anything is deleted.

        Raises
        ------
        OperationRefusedError
            When the store lists no artifact but the artifact store holds some (without
            ``force``).
        """
        older_than_s = val.check_float(older_than_s, "older_than_s", f"{_OWNER}.gc", min_value=0)
        return self._vault.collect_garbage(older_than_s, force=bool(force))

    # ------------------------------------------------------------------ events

    def _stamp(self) -> str:
        """Now on this registry's clock, as the metadata stores keep it."""
        return to_iso(self.clock.now())

    def _emit(self, record: Record) -> Event:
        """Log an event the metadata store recorded and hand it to ``on_event``."""
        event = to_event(record)
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
        where = repr(str(self.root))
        artifacts = self._backends.artifacts_location()
        if artifacts is not None:
            where += f", artifacts={artifacts!r}"
        try:
            models = self.metadata.list_models()
        except Exception:  # a repr must not raise (a server may be down)
            return f"ModelRegistry({where})"
        return f"ModelRegistry({where}, {len(models)} models)"

    def _repr_html_(self) -> str:
        """The notebook table of a registry: one row per model."""
        metadata = self.metadata
        head = "".join(
            f"<th>{h}</th>" for h in ("model", "versions", "latest", "aliases", "created (UTC)")
        )
        rows = []
        for m in metadata.list_models():
            aliases = ", ".join(f"{a}→v{v}" for a, v in metadata.aliases(m["name"]).items())
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


def _check_signature(model: Any, sample: Any, signature: Signature | None) -> Signature | None:
    """The signature to register: ``signature``, inferred from ``sample``, or None; checked."""
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
    return signature
