"""The fleet artifact store: any S3-API object store (AWS S3, MinIO, SeaweedFS, R2, ...)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from modeldeploy.exceptions import MissingDependencyError, RegistryError, StoreUnavailableError
from modeldeploy.registry._artifacts import ArtifactStore, _expected_sha256

if TYPE_CHECKING:
    from obstore.store import S3Store

__all__ = ["S3ArtifactStore"]

logger = logging.getLogger("modeldeploy.registry")

_OWNER = "S3ArtifactStore"
_TRASH = "trash/"
#: Corrupt objects replaced in a row before giving up (each replacement is conditional).
_MAX_REPLACE = 3
#: Clients kept for the process, most recent last (see :func:`_shared_client`).
_MAX_CLIENTS = 16
#: Chunks of a streamed GET (:meth:`S3ArtifactStore.download`).
_CHUNK = 1 << 20

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def _shared_client(url: str, allow_http: bool, max_retries: int, retry_timeout_s: float) -> Any:
    """One client per bucket URL, settings and environment, shared by the process's stores.

    Making a client costs several milliseconds (it loads the certificate bundle and resolves
    credentials), and every new ``ModelRegistry`` object would pay it on its first load. The
    key includes a digest of the ``AWS_*`` variables, so changed credentials or endpoints get a
    new client, and the process id, since a client cannot cross a fork.
    """
    aws = sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))
    key = hashlib.sha256(
        repr((url, allow_http, max_retries, retry_timeout_s, os.getpid(), aws)).encode()
    ).hexdigest()
    with _clients_lock:
        client = _clients.pop(key, None)
        if client is None:
            client = _import_obstore().store.from_url(
                url,
                client_options={"allow_http": allow_http},
                retry_config={
                    "max_retries": max_retries,
                    "retry_timeout": timedelta(seconds=retry_timeout_s),
                    "backoff": {
                        "init_backoff": timedelta(milliseconds=100),
                        "max_backoff": timedelta(seconds=2),
                        "base": 2.0,
                    },
                },
            )
        _clients[key] = client
        while len(_clients) > _MAX_CLIENTS:
            del _clients[next(iter(_clients))]
    return client


def _import_obstore() -> Any:
    try:
        import obstore
    except ImportError:
        raise MissingDependencyError("obstore", "s3", "An artifact store on S3") from None
    return obstore


class S3ArtifactStore(ArtifactStore):
    """Artifacts as objects under a prefix of an S3 bucket, shared by every host of a fleet.

    Keys are content addresses (``sha256/<hex>``), so a put is conditional (``If-None-Match:
    *``): an object already there is kept only once its sha256 is verified, and a corrupt one is
    replaced conditionally on its ETag, so two writers never clobber each other. A removed
    artifact first moves under ``trash/``, and `read` brings it back: a process stopped
    between removing an artifact and committing the metadata change loses nothing. Only
    `cleanup` (``ModelRegistry.gc``) empties the trash.

    Credentials and the endpoint come from the environment as for any AWS tool
    (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``,
    ``AWS_ENDPOINT_URL`` for S3-compatible servers, instance or web-identity credentials), never
    from code. An ``http://`` endpoint is allowed when one is set explicitly.

    Parameters
    ----------
    url
        ``s3://bucket`` or ``s3://bucket/prefix``.
    max_retries
        How many times the client retries a failed request before raising
        [`StoreUnavailableError`][modeldeploy.exceptions.StoreUnavailableError].
    retry_timeout_s
        The longest the client keeps retrying one request.

    Examples
    --------
    >>> from modeldeploy.registry.stores import S3ArtifactStore
    >>> S3ArtifactStore("s3://ml-models/registry")
    S3ArtifactStore('s3://ml-models/registry')
    """

    def __init__(self, url: str, *, max_retries: int = 3, retry_timeout_s: float = 10.0) -> None:
        if not url.startswith("s3://") or not url[5:].strip("/"):
            from modeldeploy.exceptions import InvalidParameterError

            raise InvalidParameterError(
                f"The 'url' parameter of {_OWNER} must be 's3://bucket' or "
                f"'s3://bucket/prefix'. Got {url!r} instead."
            )
        self.url = url.rstrip("/")
        self.max_retries = max_retries
        self.retry_timeout_s = retry_timeout_s
        self._lock = threading.Lock()
        self._client: S3Store | None = None
        self._pid: int | None = None

    def __repr__(self) -> str:
        return f"{_OWNER}({self.url!r})"

    # ------------------------------------------------------------------ client

    def _endpoint(self) -> str:
        return os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT") or "AWS"

    def _server(self) -> str:
        return f"{self.url} (endpoint {self._endpoint()})"

    def _store(self) -> S3Store:
        # A client holds a runtime and connections that do not survive a fork: one per process.
        if self._client is None or self._pid != os.getpid():
            with self._lock:
                if self._client is None or self._pid != os.getpid():
                    self._client = _shared_client(
                        self.url,
                        self._endpoint().startswith("http://"),
                        self.max_retries,
                        self.retry_timeout_s,
                    )
                    self._pid = os.getpid()
        assert self._client is not None
        return self._client

    def _failure(self, exc: Exception, action: str) -> Exception:
        """A readable registry error for an object-store failure (no credentials in it)."""
        obstore = _import_obstore()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        errors = obstore.exceptions
        if "RequestTimeTooSkewed" in str(exc):
            # S3 signatures carry the request time; servers refuse one more than ~15 min off.
            return RegistryError(
                f"The object store {self._server()} refused to {action}: this host's clock "
                f"({time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC) differs from the "
                "server's by more than S3 allows (about 15 minutes). Synchronise the clock "
                "(NTP) and try again."
            )
        if isinstance(exc, errors.PermissionDeniedError | errors.UnauthenticatedError):
            return RegistryError(
                f"The object store {self._server()} refused to {action}: {first}. Check "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the role) and the bucket's policy."
            )
        return StoreUnavailableError(
            f"Could not {action} on the object store {self._server()}: {first}. Check that the "
            "server is running and reachable, then try again; nothing half-written is visible.",
            server=self._server(),
        )

    def _call(self, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        obstore = _import_obstore()
        try:
            return fn(self._store(), *args, **kwargs)
        except (FileNotFoundError, obstore.exceptions.AlreadyExistsError):
            raise
        except obstore.exceptions.PreconditionError:
            raise
        except obstore.exceptions.BaseError as exc:
            raise self._failure(exc, action) from exc

    # ------------------------------------------------------------------ the interface

    def put(self, key: str, source: Path) -> None:
        obstore = _import_obstore()
        expected = _expected_sha256(key, source)
        data = source.read_bytes()
        try:
            self._call(f"store {key}", obstore.put, key, data, mode="create", use_multipart=False)
            return
        except obstore.exceptions.AlreadyExistsError:
            pass
        for _ in range(_MAX_REPLACE):
            try:
                got = self._call(f"read {key}", obstore.get, key)
            except FileNotFoundError:  # removed since: store it afresh
                try:
                    self._call(f"store {key}", obstore.put, key, data, mode="create")
                    return
                except obstore.exceptions.AlreadyExistsError:
                    continue
            if hashlib.sha256(bytes(got.bytes())).hexdigest() == expected:
                return
            logger.warning("artifact %s in %s is corrupt; replacing it", key, self.url)
            try:
                self._call(
                    f"replace {key}",
                    obstore.put,
                    key,
                    data,
                    mode={"e_tag": got.meta["e_tag"]},
                    use_multipart=False,
                )
                return
            except obstore.exceptions.PreconditionError:
                continue  # someone else replaced it first: verify theirs
        raise StoreUnavailableError(
            f"Could not store {key} on {self._server()}: the object kept changing while it was "
            "being verified. Try again.",
            server=self._server(),
        )

    def exists(self, key: str) -> bool:
        obstore = _import_obstore()
        for candidate in (key, _TRASH + key):
            try:
                self._call(f"look up {key}", obstore.head, candidate)
                return True
            except FileNotFoundError:
                continue
        return False

    def read(self, key: str) -> bytes:
        obstore = _import_obstore()
        try:
            return bytes(self._call(f"read {key}", obstore.get, key).bytes())
        except FileNotFoundError:
            pass
        # Removed by a transaction that did not commit: bring it back from the trash (a
        # conditional put, since S3 has no copy-if-absent; someone else's restore wins).
        data = bytes(self._call(f"read {key}", obstore.get, _TRASH + key).bytes())
        with contextlib.suppress(obstore.exceptions.AlreadyExistsError):
            self._call(f"restore {key}", obstore.put, key, data, mode="create", use_multipart=False)
        return data

    def download(self, key: str, dest: BinaryIO) -> None:
        obstore = _import_obstore()
        try:
            got = self._call(f"read {key}", obstore.get, key)
        except FileNotFoundError:
            dest.write(self.read(key))  # from the trash, restored on the way
            return
        # Chunks go straight from the client's buffers to the file: no bytes copy of the whole.
        try:
            for chunk in got.stream(min_chunk_size=_CHUNK):
                dest.write(chunk)
        except obstore.exceptions.BaseError as exc:
            raise self._failure(exc, f"read {key}") from exc

    def remove(self, key: str) -> None:
        obstore = _import_obstore()
        try:
            self._call(f"move {key} to the trash", obstore.copy, key, _TRASH + key)
        except FileNotFoundError:
            return
        self._call(f"remove {key}", obstore.delete, key)

    def modified(self, key: str) -> float | None:
        obstore = _import_obstore()
        try:
            meta = self._call(f"look up {key}", obstore.head, key)
        except FileNotFoundError:
            return None
        stamp: float = meta["last_modified"].timestamp()
        return stamp

    def keys(self) -> Iterator[str]:
        obstore = _import_obstore()
        for batch in self._call("list the artifacts", obstore.list):
            for meta in batch:
                if not meta["path"].startswith(_TRASH):
                    yield meta["path"]

    def cleanup(self, older_than_s: float) -> int:
        obstore = _import_obstore()
        # The server stamps objects with its clock; hosts and store agree within NTP's error.
        cutoff = time.time() - older_than_s
        old = [
            meta["path"]
            for batch in self._call("list the trash", obstore.list, _TRASH)
            for meta in batch
            if meta["last_modified"].timestamp() < cutoff
        ]
        for path in old:
            self._call(f"remove {path}", obstore.delete, path)
        return len(old)
