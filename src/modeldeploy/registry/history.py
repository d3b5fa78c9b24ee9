"""A model's history: its events, oldest first, as a list with a notebook table."""

from __future__ import annotations

import html

from modeldeploy.registry.version import Event

__all__ = ["History"]


class History(list[Event]):
    """A model's events, oldest first: a list with a notebook table."""

    def _repr_html_(self) -> str:
        # Notebooks right-align cells: the reasons (sentences) and the times read better
        # left-aligned, the times on one line.
        left = "style='text-align:left'"
        head = "".join(
            f"<th {left}>{h}</th>" if h in ("time (UTC)", "reason") else f"<th>{h}</th>"
            for h in ("time (UTC)", "event", "version", "alias", "before", "reason")
        )
        styles = (f"{left[:-1]};white-space:nowrap'", "", "", "", "", left)
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td {style}>{html.escape('' if v is None else str(v))}</td>"
                for style, v in zip(
                    styles,
                    (
                        f"{e.time:%Y-%m-%d %H:%M:%S}",
                        e.kind,
                        e.version,
                        e.alias,
                        e.previous,
                        e.reason,
                    ),
                    strict=True,
                )
            )
            + "</tr>"
            for e in self
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
