"""Parameter checks that give every bad argument the same sentence shape."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection
from datetime import timedelta
from typing import Any, TypeVar

from modeldeploy.exceptions import InvalidParameterError

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_T = TypeVar("_T")

#: The largest version number: what SQLite and PostgreSQL store in a signed 64-bit integer.
MAX_VERSION = 2**63 - 1


def _fail(param: str, owner: str, expected: str, got: Any) -> InvalidParameterError:
    return InvalidParameterError(
        f"The {param!r} parameter of {owner} must be {expected}. Got {got!r} instead."
    )


def check_name(value: Any, param: str, owner: str) -> str:
    """A model name or alias: letters, digits, ``.``, ``_`` and ``-``, at most 128 characters."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise _fail(
            param,
            owner,
            "a non-empty str of letters, digits, '.', '_' or '-' (at most 128, starting with a "
            "letter or digit)",
            value,
        )
    return value


def check_int(
    value: Any,
    param: str,
    owner: str,
    *,
    min_value: int | None = None,
    max_value: int | None = None,
) -> int:
    """An int (not a bool), at least ``min_value`` and at most ``max_value`` when given."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy as np

            if isinstance(value, np.integer):
                value = int(value)
            else:
                raise TypeError
        except TypeError:
            raise _fail(param, owner, _int_bounds(min_value, max_value), value) from None
    if (min_value is not None and value < min_value) or (
        max_value is not None and value > max_value
    ):
        raise _fail(param, owner, _int_bounds(min_value, max_value), value)
    return int(value)


def _int_bounds(min_value: int | None, max_value: int | None) -> str:
    lo = f" >= {min_value}" if min_value is not None else ""
    hi = f" <= {max_value}" if max_value is not None else ""
    return f"an int{lo}{' and' if lo and hi else ''}{hi}"


def check_version(value: Any, param: str, owner: str) -> int:
    """A version number: an int from 1 to ``MAX_VERSION`` (2**63 - 1), what a store can hold."""
    return check_int(value, param, owner, min_value=1, max_value=MAX_VERSION)


def check_float(
    value: Any,
    param: str,
    owner: str,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    min_inclusive: bool = True,
) -> float:
    """A finite real number within the given bounds."""
    lo = "" if min_value is None else (f" >= {min_value}" if min_inclusive else f" > {min_value}")
    hi = "" if max_value is None else f" <= {max_value}"
    expected = f"a float{lo}{' and' if lo and hi else ''}{hi}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise _fail(param, owner, expected, value) from None
    number = float(value)
    if not math.isfinite(number):
        raise _fail(param, owner, expected, value)
    if min_value is not None and (
        number < min_value or (not min_inclusive and number == min_value)
    ):
        raise _fail(param, owner, expected, value)
    if max_value is not None and number > max_value:
        raise _fail(param, owner, expected, value)
    return number


def check_timedelta(
    value: Any, param: str, owner: str, *, min_value: timedelta = timedelta(0)
) -> timedelta:
    """A ``timedelta`` of at least ``min_value`` (default: zero)."""
    if not isinstance(value, timedelta) or value < min_value:
        bound = "0" if min_value == timedelta(0) else repr(min_value)
        raise _fail(param, owner, f"a timedelta >= {bound}", value)
    return value


def check_choice(value: Any, param: str, owner: str, choices: Collection[str]) -> str:
    """One of a fixed set of strings."""
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise _fail(param, owner, f"one of {listed}", value)
    return str(value)


def check_mapping(value: Any, param: str, owner: str) -> dict[str, Any]:
    """A dict with str keys (``None`` gives an empty dict)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _fail(param, owner, "a dict with str keys or None", value)
    return dict(value)


def _describe(types: type[Any] | tuple[type[Any], ...]) -> str:
    names = [t.__name__ for t in (types if isinstance(types, tuple) else (types,))]
    article = "an" if names[0][:1].lower() in "aeiou" else "a"
    return f"{article} {' or '.join(names)}"


def check_instance(
    value: Any,
    types: type[_T] | tuple[type[_T], ...],
    param: str,
    owner: str,
    *,
    expected: str | None = None,
) -> _T:
    """An instance of ``types`` (a class, a ``runtime_checkable`` Protocol, or a tuple of them).

    ``expected`` says what was wanted in words (default: the class names); the message names
    the type that was found, not its value, which may be large or secret.

    Examples
    --------
    >>> check_instance(3, int, "n", "Thing")
    3
    >>> try:
    ...     check_instance("3", int, "n", "Thing")
    ... except InvalidParameterError as exc:
    ...     print(exc)
    The 'n' parameter of Thing must be an int. Got str instead.
    """
    if not isinstance(value, types):
        raise InvalidParameterError(
            f"The {param!r} parameter of {owner} must be {expected or _describe(types)}. Got "
            f"{type(value).__name__} instead."
        )
    return value


def check_callable(
    value: object, param: str, owner: str, *, expected: str | None = None
) -> Callable[..., Any]:
    """A callable (a function, a lambda, an object with ``__call__``).

    Examples
    --------
    >>> check_callable(len, "key", "Thing") is len
    True
    >>> try:
    ...     check_callable(3, "key", "Thing")
    ... except InvalidParameterError as exc:
    ...     print(exc)
    The 'key' parameter of Thing must be a callable. Got 3 instead.
    """
    if not callable(value):
        raise _fail(param, owner, expected or "a callable", value)
    return value
