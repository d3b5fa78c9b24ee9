"""The registry's small helpers: artifact keys and hashes, records to objects, environments."""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import platform
import sys
import warnings
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modeldeploy.exceptions import EnvironmentMismatchWarning, IntegrityError, SerializationError
from modeldeploy.registry._artifacts import ArtifactStore
from modeldeploy.registry._metadata import MetadataStore, Record
from modeldeploy.registry._signing import SEAL_TAG
from modeldeploy.registry.formats import get_format
from modeldeploy.registry.signature import Signature
from modeldeploy.registry.version import Event, ModelVersion

if TYPE_CHECKING:
    from modeldeploy.registry.registry import ModelRegistry

_OWNER = "ModelRegistry"


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


def _read_artifact(artifacts: ArtifactStore, name: str, version: int, sha256: str) -> bytes:
    """A version's artifact bytes, checked against the sha256 recorded at registration."""
    try:
        data = artifacts.read(_artifact_key(sha256))
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
    return data


def _registry_html(root: str, metadata: MetadataStore) -> str:
    """The notebook table of a registry: one row per model."""
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
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return (
        f"<table><caption>ModelRegistry at {html.escape(root)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _model_version(
    rec: Record, aliases: Mapping[str, int], registry: ModelRegistry
) -> ModelVersion:
    """A version record as a :class:`ModelVersion` bound to ``registry``."""
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
        tags={k: v for k, v in rec["tags"].items() if k != SEAL_TAG},
        description=rec["description"],
        parent=rec["parent"],
        environment=rec["environment"],
        aliases=tuple(sorted(a for a, v in aliases.items() if v == rec["version"])),
        _registry=registry,
    )


def _deserialize(
    data: bytes, name: str, version: int, format: str, environment: Mapping[str, str]
) -> Any:
    """Load a verified artifact with its format, naming the version when that fails."""
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
    return model
