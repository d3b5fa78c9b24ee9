"""What a drift check returns: one [`FeatureDrift`][modeldeploy.monitoring.FeatureDrift] per
feature, in a [`DriftResult`][modeldeploy.monitoring.DriftResult].

The statistics themselves are computed in `modeldeploy.monitoring.drift`.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["DriftResult", "FeatureDrift", "Kind", "drift_table_head", "drift_table_row"]

Kind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature (or of the predictions) in the current window.

    Attributes
    ----------
    feature
        Feature name, or ``"prediction"`` for the model's outputs.
    kind
        ``"numeric"`` or ``"categorical"``.
    test
        ``"ks"`` or ``"chi2"``: the two-sample test behind ``statistic`` and ``p_value``.
    statistic
        The KS distance or the chi-squared statistic.
    p_value
        The test's p-value.
    psi
        The population stability index over the reference bins.
    n_reference, n_current
        Non-missing rows on each side.
    drifted
        Whether the statistic chosen to alert (``method``) crosses its threshold.
    method
        ``"psi"`` or ``"ks"`` (test-based: KS for numeric, chi-squared for categorical).
        [`decided_by`][modeldeploy.monitoring.FeatureDrift.decided_by] names the statistic this
        means for this feature.

    Examples
    --------
    >>> from modeldeploy.monitoring.drift import compare_categories
    >>> d = compare_categories("color", [50, 50], [50, 50], method="psi")
    >>> d.feature, d.psi, d.drifted
    ('color', 0.0, False)
    """

    feature: str
    kind: Kind
    test: str
    statistic: float
    p_value: float
    psi: float
    n_reference: int
    n_current: int
    drifted: bool
    method: str

    @property
    def decided_by(self) -> str:
        """The statistic that decided `drifted`: ``"psi"``, or the test (``"ks"``,
        ``"chi2"``) when ``method`` is test-based.

        The other statistics are shown for information only: a tiny KS p-value next to
        ``drifted=False`` means PSI decided and stayed under its threshold.
        """
        return "psi" if self.method == "psi" else self.test

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (a statistic without data is ``None``, not ``nan``)."""
        return {
            "feature": self.feature,
            "kind": self.kind,
            "test": self.test,
            "statistic": _defined(self.statistic),
            "p_value": _defined(self.p_value),
            "psi": _defined(self.psi),
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "drifted": self.drifted,
            "method": self.method,
        }


class DriftResult(Mapping[str, FeatureDrift]):
    """Drift of every feature in the current window, and of the predictions.

    A read-only mapping from feature name to [`FeatureDrift`][modeldeploy.monitoring.FeatureDrift];
    the predictions' drift is `prediction` (``None`` until a prediction reference exists).

    Examples
    --------
    >>> r = DriftResult([], None, method="psi", n_current=0)
    >>> r.drifted, len(r)
    ([], 0)
    """

    def __init__(
        self,
        features: Sequence[FeatureDrift],
        prediction: FeatureDrift | None,
        *,
        method: str,
        n_current: int,
    ) -> None:
        self._features = {f.feature: f for f in features}
        self.prediction = prediction
        self.method = method
        self.n_current = n_current

    def __getitem__(self, name: str) -> FeatureDrift:
        return self._features[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._features)

    def __len__(self) -> int:
        return len(self._features)

    @property
    def drifted(self) -> list[str]:
        """Names of the drifted features (``"prediction"`` included when it drifted)."""
        names = [f.feature for f in self._features.values() if f.drifted]
        if self.prediction is not None and self.prediction.drifted:
            names.append("prediction")
        return names

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "method": self.method,
            "n_current": self.n_current,
            "features": {k: v.to_dict() for k, v in self._features.items()},
            "prediction": None if self.prediction is None else self.prediction.to_dict(),
            "drifted": self.drifted,
        }

    def __repr__(self) -> str:
        return (
            f"DriftResult({len(self)} features, {len(self.drifted)} drifted by {self.method}: "
            f"{self.drifted[:8]}, window of {self.n_current} rows)"
        )

    def _repr_html_(self) -> str:
        rows = list(self._features.values())
        if self.prediction is not None:
            rows.append(self.prediction)
        return (
            f"<table><caption>Drift by {html.escape(self.method)} over {self.n_current} rows "
            "(<b>bold</b>: the statistic that decided)</caption>"
            f"<thead><tr>{drift_table_head()}</tr></thead>"
            f"<tbody>{''.join(drift_table_row(f.to_dict()) for f in rows)}</tbody></table>"
        )


#: The columns of a drift table, in the notebook view and in reports.
_DRIFT_HEAD = ("feature", "test", "statistic", "p-value", "PSI", "n", "decided by", "drift")
_DECIDING_CELL = {"psi": "psi", "ks": "p_value", "chi2": "p_value"}


def drift_table_head() -> str:
    """The ``<th>`` cells of a drift table."""
    return "".join(f"<th>{h}</th>" for h in _DRIFT_HEAD)


def drift_table_row(d: Mapping[str, Any]) -> str:
    """One ``<tr>`` of a drift table from a
    [`FeatureDrift.to_dict`][modeldeploy.monitoring.FeatureDrift.to_dict], the deciding statistic
    ([`FeatureDrift.decided_by`][modeldeploy.monitoring.FeatureDrift.decided_by], read from
    ``method`` and ``test``) in bold."""
    decided = "psi" if d.get("method") == "psi" else d.get("test")
    bold = _DECIDING_CELL.get(str(decided), "")
    cells = []
    for key, spec in (("feature", ""), ("test", ""), ("statistic", ".4g"), ("p_value", ".3g"),
                      ("psi", ".4f"), ("n_current", "")):  # fmt: skip
        value = d.get(key)
        if value is None:
            text = "—"  # no data for this statistic
        else:
            text = format(value, spec) if spec and isinstance(value, float) else str(value)
        text = html.escape(text)
        cells.append(f"<td><b>{text}</b></td>" if key == bold else f"<td>{text}</td>")
    cells.append(f"<td>{html.escape(str(decided).upper().replace('CHI2', 'chi²'))}</td>")
    cells.append("<td><b>yes</b></td>" if d.get("drifted") else "<td>no</td>")
    return f"<tr>{''.join(cells)}</tr>"


def _defined(value: float) -> float | None:
    """``None`` for ``nan`` (undefined without data): JSON has no ``nan``."""
    return None if value != value else value
