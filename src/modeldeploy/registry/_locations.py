"""Where a registry lives: folders and server URLs, and how to show them without secrets."""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["is_postgres_url", "is_s3_url", "redact", "split_schema"]

_POSTGRES_SCHEMES = ("postgresql", "postgres")
_SECRET_PARAMS = {"password", "passfile", "sslpassword", "sslkey"}
_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,40}")


def _scheme(location: str | os.PathLike[str]) -> str:
    text = os.fspath(location)
    return text.split("://", 1)[0].lower() if "://" in text else ""


def is_postgres_url(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` is a PostgreSQL connection URL (``postgresql://...``)."""
    return _scheme(location) in _POSTGRES_SCHEMES


def is_s3_url(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` is an object store URL (``s3://bucket/prefix``)."""
    return _scheme(location) == "s3"


def redact(url: str) -> str:
    """``url`` without a password, in the netloc or in the query (``?password=...``).

    Examples
    --------
    >>> redact("postgresql://md:s3cret@db.internal:5432/models?sslmode=require")
    'postgresql://md@db.internal:5432/models?sslmode=require'
    >>> redact("s3://ml-models/registry")
    's3://ml-models/registry'
    """
    if "://" not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}@{host}"
    query = urlencode(
        [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k not in _SECRET_PARAMS
        ]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def split_schema(url: str) -> tuple[str, str | None]:
    """Take our own ``schema=`` parameter out of a PostgreSQL URL: ``(url for libpq, schema)``.

    libpq refuses parameters it does not know, so ``?schema=`` (which PostgreSQL schema holds
    the registry's tables) is read here and removed before connecting.
    """
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in params if k == "schema"), None)
    if schema is None:
        return url, None
    query = urlencode([(k, v) for k, v in params if k != "schema"])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment)), schema


def check_schema(schema: str, owner: str) -> str:
    """A PostgreSQL schema name we can put in SQL text safely (validated, never user SQL)."""
    from modeldeploy.exceptions import InvalidParameterError

    if not isinstance(schema, str) or not _SCHEMA_RE.fullmatch(schema):
        raise InvalidParameterError(
            f"The 'schema' parameter of {owner} must be a lowercase SQL identifier (letters, "
            f"digits and '_', at most 41 characters, not starting with a digit). Got {schema!r} "
            "instead."
        )
    return schema
