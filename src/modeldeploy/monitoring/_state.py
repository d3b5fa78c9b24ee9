"""Saving a Monitor's state to one ``.npz`` file and loading it back (counts, never rows)."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import os
import warnings
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modeldeploy._clock import as_clock
from modeldeploy.exceptions import DriftWarning, StateFileError
from modeldeploy.monitoring._windows import scalar
from modeldeploy.monitoring.alerts import Alert, AlertCallback
from modeldeploy.monitoring.drift import ReferenceProfile
from modeldeploy.monitoring.estimation import ProbabilityCalibrator
from modeldeploy.registry.signature import Signature
from modeldeploy.typing import Clock

if TYPE_CHECKING:
    from modeldeploy.monitoring.monitor import Monitor

__all__ = ["STATE_FORMAT", "load_monitor", "save_monitor"]

STATE_FORMAT = 2  # 1: before per-version windows (still loads)


def save_monitor(mon: Monitor, path: str | os.PathLike[str]) -> Path:
    """What :meth:`Monitor.save <modeldeploy.Monitor.save>` does: arrays and a JSON header.

    The file holds counts and sketches, never raw rows; it is written atomically (a temporary
    file, fsync, rename).
    """
    with mon._lock:
        mon._flush()
        meta = _state_meta(mon)
        arrays = {f"ring_{k}": v for k, v in mon._ring.arrays.items()}
        arrays["ring_keys"] = mon._ring.keys
        for tag, ring in mon._version_rings.items():
            arrays.update({f"ver{tag}_{k}": v for k, v in ring.arrays.items()})
            arrays[f"ver{tag}_keys"] = ring.keys
        arrays["ref_pred_counts"] = mon._ref_pred_counts
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        blob = io.BytesIO()
        np.savez_compressed(blob, allow_pickle=False, **arrays)
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(blob.getvalue())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return target


def _state_meta(mon: Monitor) -> dict[str, Any]:
    pending = [[i, k, c, t, g] for i, (k, c, t, g) in mon._labels.pending.items() if _jsonable(i)]
    return {
        "format": STATE_FORMAT,
        "params": {
            "window": (
                {"seconds": mon._bucket_s * mon.buckets}
                if not mon._bucket_size
                else {"rows": mon._window_rows}
            ),
            "buckets": mon.buckets,
            "task": mon.task,
            "classes": mon.classes,
            "pos_label": scalar(mon.pos_label),
            "average": mon.average,
            "thresholds": mon.thresholds,
            "min_samples": mon.min_samples,
            "min_drift_samples": mon.min_drift_samples,
            "max_pending": mon.max_pending,
            "label_ttl_s": mon.label_ttl_s,
            "early_label_ttl_s": mon.early_label_ttl_s,
            "sketch_bins": mon.sketch_bins,
            "psi_bins": mon.psi_bins,
            "max_classes": mon.max_classes,
            "max_versions": mon.max_versions,
            "name": mon.name,
        },
        "signature": None if mon.signature is None else mon.signature.to_dict(),
        "profile": None if mon._profile is None else mon._profile.to_dict(),
        "pred_profile": None if mon._pred_profile is None else mon._pred_profile.to_dict(),
        "pred_reference_rows": [r.tolist() for r in mon._pred_reference_rows],
        "pred_reference_ready": mon._pred_reference_ready,
        "calibrator": None if mon._calibrator is None else mon._calibrator.to_dict(),
        "task": mon._task,
        "class_list": mon._class_list,
        "seq": mon._seq,
        "last_key": mon._last_key,
        "errors": {"total": mon._n_errors_total, "by_type": mon._error_types},
        "versions": mon._versions,
        "version_tags": list(mon._version_tags.items()),
        "next_tag": mon._next_tag,
        "breached": sorted(mon._alerts.breached),
        "history": list(mon._history),
        "alerts": [a.to_dict() for a in mon._alerts.recent],
        "pending": pending,
        "resolved": [[i, r] for i, r in mon._labels.resolved.items() if _jsonable(i)],
        "early": [
            [i, v, t, r]
            for i, (v, t, r) in mon._labels.early.items()
            if _jsonable(i) and _jsonable(v)
        ],
        "label_counts": mon._labels.counts,
        "latest_time": mon._latest if math.isfinite(mon._latest) else None,
    }


def load_monitor(
    cls: type[Monitor],
    path: str | os.PathLike[str],
    *,
    on_alert: AlertCallback | Sequence[AlertCallback] | None = None,
    clock: Clock | Callable[[], float] | None = None,
) -> Monitor:
    """What :meth:`Monitor.load <modeldeploy.Monitor.load>` does; format 1 files load too.

    A file that cannot be read as a monitor state (truncated, damaged, another kind of file)
    raises :class:`~modeldeploy.exceptions.StateFileError` naming it; a missing or unreadable
    file raises the ``FileNotFoundError`` or ``PermissionError`` the system gave.
    """
    clock = as_clock(clock, "Monitor")  # a bad clock is the caller's error, not the file's
    try:
        return _load(cls, path, on_alert=on_alert, clock=clock)
    except (StateFileError, FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as exc:  # zipfile, zlib, numpy's header parser, json, a missing key, ...
        raise StateFileError(
            f"Could not load a Monitor state from {os.fspath(path)!r}: the file is damaged, "
            f"truncated or not a file written by Monitor.save ({type(exc).__name__}: {exc}). "
            "Restore it from a backup, or start a new Monitor (its windows start empty).",
            path=os.fspath(path),
        ) from exc


def _load(
    cls: type[Monitor],
    path: str | os.PathLike[str],
    *,
    on_alert: AlertCallback | Sequence[AlertCallback] | None,
    clock: Clock | Callable[[], float] | None,
) -> Monitor:
    # Opened here so that the file is closed even when numpy fails half-way through it.
    with open(Path(path), "rb") as fh, np.load(fh, allow_pickle=False) as data:
        meta = json.loads(data["meta"].tobytes().decode())
        arrays = {k[5:]: data[k] for k in data.files if k.startswith("ring_")}
        by_tag: dict[int, dict[str, np.ndarray]] = {}
        for k in data.files:
            if k.startswith("ver"):
                tag, _, name = k[3:].partition("_")
                by_tag.setdefault(int(tag), {})[name] = data[k]
        ref_pred_counts = np.asarray(data["ref_pred_counts"])
    if not isinstance(meta, dict) or meta.get("format") not in (1, STATE_FORMAT):
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise StateFileError(
            f"{os.fspath(path)!r} is not a Monitor state file of format {STATE_FORMAT} (got "
            f"{found!r}). Save it again with Monitor.save.",
            path=os.fspath(path),
        )
    p = dict(meta["params"])
    window = p.pop("window")
    p["window"] = window["rows"] if "rows" in window else dt.timedelta(seconds=window["seconds"])
    sig = None if meta["signature"] is None else Signature.from_dict(meta["signature"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DriftWarning)  # it warned when first built
        mon = cls(signature=sig, on_alert=on_alert, clock=clock, **p)
    mon._profile = None if meta["profile"] is None else ReferenceProfile.from_dict(meta["profile"])
    if meta["pred_profile"] is not None:
        mon._pred_profile = ReferenceProfile.from_dict(meta["pred_profile"])
    mon._pred_reference_rows = [np.asarray(r) for r in meta["pred_reference_rows"]]
    mon._pred_reference_ready = bool(meta["pred_reference_ready"])
    if meta["calibrator"] is not None:
        mon._calibrator = ProbabilityCalibrator.from_dict(meta["calibrator"])
    mon._task = meta["task"]
    for c in (scalar(c) for c in meta["class_list"]):
        mon._class_code(c)
    mon._ring.keys = _keys(arrays.pop("keys"), mon.buckets)
    mon._ring.arrays = _ring_arrays(mon._ring.arrays, arrays, mon.buckets)
    mon._ref_pred_counts = ref_pred_counts.astype(np.float64)
    mon._seq = int(meta["seq"])
    mon._last_key = int(meta["last_key"])
    mon._n_errors_total = int(meta["errors"]["total"])
    mon._error_types = dict(meta["errors"]["by_type"])
    mon._versions = dict(meta["versions"])
    for version, tag in meta.get("version_tags", []):
        ring = mon._new_ring()
        ring.keys = _keys(by_tag[tag].pop("keys"), mon.buckets)
        ring.arrays = _ring_arrays(ring.arrays, by_tag[tag], mon.buckets)
        mon._version_tags[version] = int(tag)
        mon._version_rings[int(tag)] = ring
    mon._next_tag = int(meta.get("next_tag", 0))
    mon._alerts.breached = set(meta["breached"])
    mon._history.extend(meta["history"])
    mon._labels.pending = {
        _key(e[0]): (int(e[1]), e[2], float(e[3]), int(e[4]) if len(e) > 4 else -1)
        for e in meta["pending"]
    }
    mon._labels.resolved = {_key(i): int(r) for i, r in meta["resolved"]}
    # Labels that came before their prediction (absent from files saved before they waited).
    mon._labels.early = {_key(i): (v, float(t), int(r)) for i, v, t, r in meta.get("early", [])}
    mon._labels.counts.update(meta["label_counts"])
    if meta.get("latest_time") is not None:  # absent from files saved before it was kept
        mon._latest = max(mon._latest, float(meta["latest_time"]))
    for a in meta["alerts"]:
        a = dict(a)
        a["at"] = dt.datetime.fromisoformat(a["at"])
        mon._alerts.recent.append(Alert(**a))
    # Read everything once, so that arrays that do not fit together fail here, naming the
    # file, rather than at the first metrics() call.
    arrays = mon._ring.arrays
    if "conf" in arrays:
        caps = {arrays[k].shape[1] for k in ("conf", "expected", "pred")}
        if len(caps) != 1 or caps.pop() < len(mon._class_list):
            raise ValueError(f"class arrays too small for {len(mon._class_list)} classes")
    for ring in (mon._ring, *mon._version_rings.values()):
        mon._sync_arrays(ring)
        mon._metrics(ring)
    mon._drift()
    return mon


#: Ring arrays a monitor adds as it learns what it watches (classes, a task, a reference).
_RING_ARRAYS = frozenset({"conf", "expected", "pred", "reg", "features", "pred_hist"})
#: Ring arrays added to the format since files were first saved; older files start them at 0.
_ADDED_SINCE = frozenset({"n_nan_pred"})


def _keys(keys: np.ndarray, buckets: int) -> np.ndarray:
    if keys.shape != (buckets,):
        raise ValueError(f"bucket keys of shape {keys.shape}, expected ({buckets},)")
    return np.asarray(keys, dtype=np.int64)


def _ring_arrays(
    fresh: dict[str, np.ndarray], saved: dict[str, np.ndarray], buckets: int
) -> dict[str, np.ndarray]:
    """The saved arrays of a ring, checked; arrays added since the file was saved start at 0."""
    out = dict(fresh)
    absent = set(fresh) - set(saved) - _ADDED_SINCE
    unknown = set(saved) - set(fresh) - _RING_ARRAYS
    if absent or unknown:
        raise ValueError(f"ring arrays missing {sorted(absent)}, unexpected {sorted(unknown)}")
    for name, value in saved.items():
        expected = fresh.get(name)
        if (
            value.ndim < 1
            or value.shape[0] != buckets
            or value.dtype.kind not in "biuf"
            or (expected is not None and expected.ndim != value.ndim)
            or (name == "conf" and value.shape[1] != value.shape[2])
        ):
            raise ValueError(f"array {name!r} of shape {value.shape} and dtype {value.dtype}")
        out[name] = np.array(value)
    return out


def _key(value: Any) -> Hashable:
    return tuple(value) if isinstance(value, list) else value


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None
