"""What a routing rule sees ([`Request`][modeldeploy.routing.Request]) and the declarative rules of
``HybridRouter``.

A rule is any callable taking a [`Request`][modeldeploy.routing.Request] and returning ``"online"``,
``"batch"`` or ``None`` (undecided: the next rule, or the router's default, decides). The functions
here build the common ones; a user's lambda fits wherever they do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from modeldeploy._clock import SYSTEM_CLOCK
from modeldeploy._config import DEFAULT_ROUTER_MAX_ONLINE_ROWS
from modeldeploy._validation import (
    check_callable,
    check_choice,
    check_float,
    check_instance,
    check_int,
)
from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.typing import Clock

__all__ = ["Path", "Request", "Rule", "by_deadline", "by_meta", "by_size", "first_of"]

#: Where a request goes.
Path = Literal["online", "batch"]
#: A routing rule: a request in, a path (or ``None``, undecided) out.
Rule = Callable[["Request"], "Path | None"]

_PATHS = ("online", "batch")


@dataclass(frozen=True)
class Request:
    """One request as a routing rule sees it.

    Attributes
    ----------
    rows
        The rows, validated against the online deployer's signature (a 2-D array) when it has
        one, else as given.
    meta
        The caller's metadata (``{"urgent": True, "tenant": "a"}``); empty when none was given.
    n_rows
        Number of rows.
    deadline
        When the caller needs the answer: a ``datetime`` (naive ones are local time, like
        ``datetime.now()``), or a ``timedelta`` or a number of seconds from the request's
        arrival; ``None`` when the caller did not say.
    ids
        One id per row, or ``None``.
    key
        The request key (user id, session id, ...) used for sticky canaries, or ``None``.
    received
        The router's ``clock.monotonic()`` when it received the request.
    clock
        The router's [`Clock`][modeldeploy.typing.Clock], which
        [`seconds_left`][modeldeploy.routing.Request.seconds_left] reads.

    Examples
    --------
    >>> req = Request(rows=[[1.0, 2.0]], meta={"urgent": True}, n_rows=1, deadline=5.0)
    >>> req.meta["urgent"], 4.0 < req.seconds_left() <= 5.0
    (True, True)
    """

    rows: Any = field(repr=False)
    meta: Mapping[str, Any] = field(default_factory=dict)
    n_rows: int = 0
    deadline: datetime | timedelta | float | None = None
    ids: Any = None
    key: Any = None
    received: float = field(default_factory=SYSTEM_CLOCK.monotonic)
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False, compare=False)

    def seconds_left(self) -> float | None:
        """Seconds until the deadline (negative once passed), or ``None`` without one."""
        deadline = self.deadline
        if deadline is None:
            return None
        if isinstance(deadline, datetime):
            now = self.clock.now()
            if deadline.tzinfo is None:  # naive: local time, like datetime.now()
                now = now.astimezone().replace(tzinfo=None)
            return (deadline - now).total_seconds()
        if isinstance(deadline, timedelta):
            deadline = deadline.total_seconds()
        return self.received + float(deadline) - self.clock.monotonic()


def check_deadline(value: Any, owner: str) -> datetime | timedelta | float | None:
    """A deadline argument: ``None``, a ``datetime``, a ``timedelta`` or seconds."""
    if value is None or isinstance(value, (datetime, timedelta)):
        return value
    return check_float(value, "deadline", owner)


class _ByMeta:
    __slots__ = ("key", "online_if")

    def __init__(self, key: str, online_if: Any) -> None:
        self.key = key
        self.online_if = online_if

    def __call__(self, request: Request) -> Path | None:
        if self.key not in request.meta:
            return None
        return "online" if request.meta[self.key] == self.online_if else "batch"

    def __repr__(self) -> str:
        return f"by_meta({self.key!r}, online_if={self.online_if!r})"


class _ByDeadline:
    __slots__ = ("online_within",)

    def __init__(self, online_within: float) -> None:
        self.online_within = online_within

    def __call__(self, request: Request) -> Path | None:
        left = request.seconds_left()
        if left is None:
            return None
        return "online" if left <= self.online_within else "batch"

    def __repr__(self) -> str:
        return f"by_deadline(online_within={self.online_within:g})"


class _BySize:
    __slots__ = ("max_online_rows",)

    def __init__(self, max_online_rows: int) -> None:
        self.max_online_rows = max_online_rows

    def __call__(self, request: Request) -> Path:
        return "online" if request.n_rows <= self.max_online_rows else "batch"

    def __repr__(self) -> str:
        return f"by_size(max_online_rows={self.max_online_rows})"


class _FirstOf:
    __slots__ = ("default", "rules")

    def __init__(self, rules: tuple[Rule, ...], default: Path | None) -> None:
        self.rules = rules
        self.default = default

    def __call__(self, request: Request) -> Path | None:
        for rule in self.rules:
            path = check_path(rule(request), rule)
            if path is not None:
                return path
        return self.default

    def __repr__(self) -> str:
        inner = ", ".join(map(repr, self.rules))
        tail = "" if self.default is None else f", default={self.default!r}"
        return f"first_of({inner}{tail})"


def by_meta(key: str, online_if: Any = True) -> Rule:
    """Route by a metadata key: online when ``meta[key] == online_if``, batch otherwise.

    Requests without the key are left undecided (``None``), so a later rule decides.

    Examples
    --------
    >>> rule = by_meta("urgent", online_if=True)
    >>> [rule(Request(rows=None, meta=m)) for m in ({"urgent": True}, {"urgent": False}, {})]
    ['online', 'batch', None]
    """
    return _ByMeta(check_instance(key, str, "key", "by_meta"), online_if)


def by_deadline(online_within: timedelta | float) -> Rule:
    """Route by deadline: online when the answer is needed within ``online_within``.

    Requests with more time than that go to the batch path; requests without a deadline are
    left undecided.

    Parameters
    ----------
    online_within
        A ``timedelta`` or seconds.

    Examples
    --------
    >>> from datetime import timedelta
    >>> rule = by_deadline(online_within=timedelta(seconds=5))
    >>> [rule(Request(rows=None, deadline=d)) for d in (1.0, 3600.0, None)]
    ['online', 'batch', None]
    """
    if isinstance(online_within, timedelta):
        online_within = online_within.total_seconds()
    seconds = check_float(online_within, "online_within", "by_deadline", min_value=0)
    return _ByDeadline(seconds)


def by_size(max_online_rows: int = DEFAULT_ROUTER_MAX_ONLINE_ROWS) -> Rule:
    """Route by size: requests of at most ``max_online_rows`` rows online, bigger ones to batch.

    This rule always decides; ``by_size()`` is the router's default rule.

    Examples
    --------
    >>> rule = by_size(max_online_rows=100)
    >>> rule(Request(rows=None, n_rows=100)), rule(Request(rows=None, n_rows=101))
    ('online', 'batch')
    """
    return _BySize(check_int(max_online_rows, "max_online_rows", "by_size", min_value=0))


def first_of(*rules: Rule, default: Path | None = None) -> Rule:
    """Combine rules: the first one that decides wins; ``default`` when none does.

    A list of rules given as a router's ``route=`` means the same thing.

    Examples
    --------
    >>> rule = first_of(by_meta("urgent"), by_size(max_online_rows=10))
    >>> rule(Request(rows=None, meta={"urgent": True}, n_rows=500))
    'online'
    >>> rule(Request(rows=None, n_rows=500))
    'batch'
    """
    for rule in rules:
        check_callable(
            rule, "rules", "first_of", expected="callables (Request -> 'online', 'batch' or None)"
        )
    if default is not None:
        check_choice(default, "default", "first_of", _PATHS)
    return _FirstOf(tuple(rules), default)


def check_path(path: Any, rule: Any) -> Path | None:
    """What a rule returned, checked: ``"online"``, ``"batch"`` or ``None``."""
    if path is None or path == "online" or path == "batch":
        return path  # type: ignore[no-any-return]
    raise InvalidParameterError(
        f"A routing rule must return 'online', 'batch' or None. The rule {rule!r} returned "
        f"{path!r} instead; fix the rule."
    )
