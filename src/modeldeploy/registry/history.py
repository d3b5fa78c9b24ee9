"""A model's history: its events, oldest first, as a list with a notebook table."""

from __future__ import annotations

import html

from modeldeploy.registry.version import Event

__all__ = ["History"]


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
