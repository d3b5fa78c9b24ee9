"""The ``modeldeploy`` command: see and move model versions from a shell, score files.

Exit codes: 0 success, 1 not found or refused (or a failed ``verify``), 2 usage error (a bad
option, a malformed ``NAME:VERSION``). Errors are one line on stderr; ``--debug`` adds the
traceback. When the reader of the output goes away (``modeldeploy history m | head``), the
command stops quietly with exit code 1, as the Python documentation recommends for SIGPIPE.
``--json`` prints strict JSON: a NaN or infinite number is written as ``null``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import numpy as np

from modeldeploy._config import DEFAULT_ALIAS, DEFAULT_REGISTRY_ROOT
from modeldeploy.exceptions import ModelDeployError
from modeldeploy.registry import Event, ModelRegistry, ModelVersion

__all__ = ["main"]

ENV_REGISTRY = "MODELDEPLOY_REGISTRY"
ENV_ARTIFACTS = "MODELDEPLOY_ARTIFACTS"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CommandError(Exception):
    """A failure to report on one line with exit code 1."""


# ---------------------------------------------------------------------- output helpers


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str], out: TextIO) -> None:
    text = [[str(c) for c in header]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(header))]
    for i, row in enumerate(text):
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
        if i == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit code 2), like the command's."""

    def error(self, message: str) -> NoReturn:
        self.exit(
            EXIT_USAGE,
            f"modeldeploy: error: {message} (run '{self.prog} --help' for usage)\n",
        )


def _finite(data: Any) -> Any:
    """``data`` with every NaN or infinite number replaced by ``None`` (JSON has neither)."""
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    if isinstance(data, (float, np.floating)):
        value = float(data)
        return value if math.isfinite(value) else None
    if isinstance(data, np.generic):  # numpy ints and bools print as numbers, not strings
        return data.item()
    return data


def _emit_json(data: Any, out: TextIO) -> None:
    json.dump(_finite(data), out, indent=2, sort_keys=False, default=str, allow_nan=False)
    out.write("\n")


def _metrics(version: ModelVersion, limit: int = 3) -> str:
    items = list(version.metrics.items())[:limit]
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items)


_REF = re.compile(r"(?P<name>[^:@]+)(?::(?P<version>[0-9]+)|@(?P<alias>[^:@]+))?")


def _ref(text: str) -> tuple[str, int | None, str | None]:
    """Parse ``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS`` (an argparse type: exit 2 if bad)."""
    found = _REF.fullmatch(text)
    if found is None:
        raise argparse.ArgumentTypeError(
            f"expected NAME, NAME:VERSION (VERSION a whole number such as 3) or NAME@ALIAS; "
            f"got {text!r}"
        )
    version = found.group("version")
    return found.group("name"), None if version is None else int(version), found.group("alias")


def _ref_text(ref: tuple[str, int | None, str | None]) -> str:
    """A parsed reference written back (``churn:3``, ``churn@production``, ``churn``)."""
    name, number, alias = ref
    return name + (f":{number}" if number is not None else "") + (f"@{alias}" if alias else "")


# ---------------------------------------------------------------------- commands


def cmd_models(reg: ModelRegistry, args: argparse.Namespace, out: TextIO) -> int:
    rows = reg.metadata.list_models()
    data = [
        {
            "name": m["name"],
            "versions": m["versions"],
            "latest": m["latest"],
            "aliases": reg.metadata.aliases(m["name"]),
            "created_at": m["created_at"],
        }
        for m in rows
    ]
    if args.json:
        _emit_json(data, out)
    elif not data:
        out.write("No models registered.\n")
    else:
        _table(
            [
                (
                    d["name"],
                    d["versions"],
                    d["latest"],
                    ", ".join(f"{a}=v{v}" for a, v in d["aliases"].items()) or "-",
                    str(d["created_at"])[:19].replace("T", " "),
                )
                for d in data
            ],
            ("MODEL", "VERSIONS", "LATEST", "ALIASES", "CREATED (UTC)"),
            out,
        )
    return EXIT_OK


def cmd_versions(reg: ModelRegistry, args: argparse.Namespace, out: TextIO) -> int:
    name, number, alias = args.ref
    if number is None and alias is None:
        versions = reg.versions(name)
    else:  # NAME:VERSION or NAME@ALIAS: the one version it addresses
        versions = [reg.get(name, number, alias=alias)]
    if args.json:
        _emit_json([v.to_dict() for v in versions], out)
        return EXIT_OK
    _table(
        [
            (
                v.version,
                f"{v.created_at:%Y-%m-%d %H:%M:%S}",
                ", ".join(v.aliases) or "-",
                v.format,
                v.sha256[:12],
                _metrics(v) or "-",
                v.description[:40],
            )
            for v in versions
        ],
        ("VERSION", "CREATED (UTC)", "ALIASES", "FORMAT", "SHA256", "METRICS", "DESCRIPTION"),
        out,
    )
    return EXIT_OK


def cmd_show(reg: ModelRegistry, args: argparse.Namespace, out: TextIO) -> int:
    name, number, alias = args.ref
    v = reg.get(name, number, alias=alias)
    if args.json:
        _emit_json(v.to_dict(), out)
        return EXIT_OK
    lines = [
        ("version", v.ref),
        ("aliases", ", ".join(v.aliases) or "-"),
        ("created", f"{v.created_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("format", v.format),
        ("size", f"{v.size:,} bytes"),
        ("sha256", v.sha256),
        ("parent", f"{v.name}:{v.parent}" if v.parent is not None else "-"),
        ("description", v.description or "-"),
        ("metrics", json.dumps(dict(v.metrics)) if v.metrics else "-"),
        ("tags", json.dumps(dict(v.tags)) if v.tags else "-"),
        ("params", json.dumps(dict(v.params), default=str) if v.params else "-"),
        ("environment", ", ".join(f"{k} {val}" for k, val in v.environment.items())),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        out.write(f"{key.ljust(width)}  {value}\n")
    if v.signature is None:
        out.write(f"{'signature'.ljust(width)}  - (registered without a sample)\n")
    else:
        sig = v.signature
        out.write(
            f"{'signature'.ljust(width)}  {sig.n_features} features from {sig.input_type}, "
            f"profiled on {sig.n_rows:,} rows\n"
        )
        _table(
            [
                (f.name, f.dtype, f.kind, "yes" if f.allow_nan else "no", _profile(f.profile))
                for f in sig.features
            ],
            ("FEATURE", "DTYPE", "KIND", "NAN OK", "PROFILE"),
            out,
        )
    return EXIT_OK


def _profile(p: dict[str, Any] | Any) -> str:
    if "values" in p:
        top = list(p["values"].items())[:3]
        return ", ".join(f"{k} ({n})" for k, n in top) + (" ..." if len(p["values"]) > 3 else "")
    if "min" in p:
        return f"min {p['min']:.4g}, mean {p['mean']:.4g}, max {p['max']:.4g}"
    return "-"


def cmd_promote(reg: ModelRegistry, args: argparse.Namespace, out: TextIO) -> int:
    name, number, alias = args.ref
    if args.version is not None:
        if number is not None or alias is not None:
            raise CommandError(
                f"Expected NAME VERSION, NAME:VERSION or NAME@ALIAS; got "
                f"{_ref_text(args.ref)!r} and the version {args.version} too. Give the version "
                "once."
            )
        number = args.version
    elif number is None and alias is None:
        raise CommandError(
            f"Which version of {name}? Give NAME:VERSION (churn:3), NAME@ALIAS (churn@staging: "
            "the version that alias points at) or NAME VERSION."
        )
    version = number if number is not None else reg.get(name, alias=alias).version
    before = reg.metadata.aliases(name).get(args.alias)
    v = reg.promote(name, version, alias=args.alias, reason=args.reason)
    if args.json:
        _emit_json(
            {"name": v.name, "alias": args.alias, "version": v.version, "previous": before}, out
        )
    else:
        was = f" (was v{before})" if before is not None else ""
        out.write(f"{v.name}@{args.alias} -> v{v.version}{was}\n")
    return EXIT_OK


def cmd_rollback(reg: ModelRegistry, args: argparse.Namespace, out: TextIO) -> int:
    name, number, ref_alias = args.ref
    if number is not None:
        raise CommandError(
            f"Expected NAME or NAME@ALIAS (the alias to move back), got {_ref_text(args.ref)!r}: a "
            "rollback moves an alias, not a version. To serve a given version, promote it."
        )
    if ref_alias is not None and args.alias is not None and ref_alias != args.alias:
        raise CommandError(
            f"Two aliases given: @{ref_alias} and --alias {args.alias}. Give one of them."
        )
    alias = ref_alias or args.alias or DEFAULT_ALIAS
    before = reg.metadata.aliases(name).get(alias)
    v = reg.rollback(name, alias=alias, reason=args.reason)
    if args.json:
        _emit_json({"name": v.name, "alias": alias, "version": v.version, "previous": before}, out)
    else:
        out.write(f"{v.name}@{alias} -> v{v.version} (rolled back from v{before})\n")
    return EXIT_OK


def cmd_history(reg: ModelRegistry, args: argparse.Namespace, out: TextIO) -> int:
    name, number, alias = args.ref
    events: list[Event] = list(reg.history(name))
    if number is not None:  # NAME:VERSION: the events of that version
        events = [e for e in events if e.version == number]
    if alias is not None:  # NAME@ALIAS: the moves of that alias
        events = [e for e in events if e.alias == alias]
    if args.json:
        _emit_json([e.to_dict() for e in events], out)
        return EXIT_OK
    _table(
        [
            (
                f"{e.time:%Y-%m-%d %H:%M:%S}",
                e.kind,
                e.version,
                e.alias or "",
                e.previous if e.previous is not None else "",
                e.reason,
            )
            for e in events
        ],
        ("TIME (UTC)", "EVENT", "VERSION", "ALIAS", "BEFORE", "REASON"),
        out,
    )
    return EXIT_OK


def cmd_verify(reg: ModelRegistry, args: argparse.Namespace, out: TextIO) -> int:
    name, number, alias = args.ref if args.ref else (None, None, None)
    if number is not None or alias is not None:
        raise CommandError(
            f"Expected NAME (every version of it is checked) or nothing (every model); got "
            f"{_ref_text(args.ref)!r}."
        )
    names = [name] if name else reg.models()
    checked = sum(len(reg.metadata.list_versions(n)) for n in names)
    problems = reg.verify(name)
    if args.json:
        _emit_json({"checked": checked, "problems": problems}, out)
    else:
        for p in problems:
            out.write(f"{p['name']}:{p['version']}  {p['problem']}  (sha256 {p['sha256']})\n")
        out.write(
            f"{checked} artifact{'s' if checked != 1 else ''} checked, "
            f"{len(problems)} problem{'s' if len(problems) != 1 else ''}.\n"
        )
    return EXIT_FAILED if problems else EXIT_OK


def cmd_sign(reg: ModelRegistry, args: argparse.Namespace, out: TextIO) -> int:
    name, number, alias = _ref(args.ref) if args.ref else (None, None, None)
    if alias is not None:
        raise CommandError(
            "Expected NAME or NAME:VERSION (an alias is signed with its version), got "
            f"{args.ref!r}."
        )
    signed = reg.sign(name, number, force=args.force)
    if args.json:
        _emit_json({"signed": signed}, out)
    else:
        for s in signed:
            what = f"@{s['alias']} (v{s['version']})" if s["alias"] else f":{s['version']}"
            out.write(f"{s['name']}{what}  signed (was {s['was']})\n")
        out.write(f"{len(signed)} record{'s' if len(signed) != 1 else ''} signed.\n")
    return EXIT_OK


def cmd_fastpath(reg: ModelRegistry, args: argparse.Namespace, out: TextIO) -> int:
    from modeldeploy.fastpath import attach_fast_path

    name, number, alias = args.ref
    version = reg.get(name, number, alias=alias)
    report = attach_fast_path(version, mode="require" if args.require else "auto")
    if args.json:
        _emit_json({"version": version.ref, **report.to_dict()}, out)
    else:
        out.write(
            f"{version.ref}: fast path attached, served by {report.served_by} "
            f"({report.reason}; compiled in {report.compile_s:.2f} s)\n"
        )
    return EXIT_OK


def cmd_score(reg: ModelRegistry, args: argparse.Namespace, out: TextIO) -> int:
    from modeldeploy.deployers.batch import BatchDeployer

    name, number, alias = args.ref
    version = reg.get(name, number, alias=alias)
    source = Path(args.input)
    if not source.exists():
        raise CommandError(f"No input file {str(source)!r}: give a .npy, .csv or .parquet file.")
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    if progress:
        try:
            import tqdm  # noqa: F401
        except ImportError:  # a bar is a nicety on a terminal, not a reason to fail
            progress = False
    with BatchDeployer(
        version,
        chunk_size=args.chunk_size,
        n_jobs=args.n_jobs,
        method="predict_proba" if args.proba else "predict",
        on_error="skip" if args.skip_errors else "raise",
    ) as job:
        result = job.run(
            str(source),
            output=args.output,
            id_columns=args.id_columns or None,
            progress=progress,
            resume=args.resume,
        )
    summary = {
        "version": version.ref,
        "input": str(source),
        "output": args.output,
        "rows": result.rows,
        "seconds": round(result.seconds, 3),
        "rows_per_second": round(result.rows_per_second, 1),
        "chunks": result.chunks,
        "skipped": [
            {"chunk": s.chunk, "start": s.start, "stop": s.stop, "reason": s.reason}
            for s in result.skipped
        ],
    }
    if args.json:
        _emit_json(summary, out)
    else:
        skipped = f", {len(result.skipped)} chunks skipped" if result.skipped else ""
        out.write(
            f"{version.ref}: scored {result.rows:,} rows in {result.seconds:.2f} s "
            f"({result.rows_per_second:,.0f} rows/s){skipped} -> {args.output}\n"
        )
        for s in result.skipped:
            out.write(f"  skipped chunk {s.chunk}, rows {s.start}-{s.stop - 1}: {s.reason}\n")
    return EXIT_FAILED if result.skipped else EXIT_OK


# ---------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``modeldeploy`` command."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--registry",
        metavar="PATH|URL",
        default=argparse.SUPPRESS,
        help=f"registry folder or postgresql:// URL (default: ${ENV_REGISTRY}, else "
        f"./{DEFAULT_REGISTRY_ROOT})",
    )
    common.add_argument(
        "--artifacts",
        metavar="URL",
        default=argparse.SUPPRESS,
        help=f"artifact store, e.g. s3://bucket/prefix (default: ${ENV_ARTIFACTS}, else the "
        "registry folder's)",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts"
    )
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )

    parser = _Parser(
        prog="modeldeploy",
        description="See and move model versions in a modeldeploy registry; score files.",
        epilog="Exit codes: 0 ok, 1 not found or refused, 2 usage.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func: Callable[..., int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(func=func)
        return p

    add("models", cmd_models, "list the registered models")
    p = add("versions", cmd_versions, "list the versions of a model (or the one addressed)")
    p.add_argument("ref", metavar="NAME[:VERSION|@ALIAS]", type=_ref)
    p = add("show", cmd_show, "show one version in full (signature, lineage, sha256)")
    p.add_argument("ref", metavar="NAME[:VERSION|@ALIAS]", type=_ref)
    p = add(
        "promote",
        cmd_promote,
        "point an alias at a version: NAME:VERSION, NAME@ALIAS (the version that alias points "
        "at) or NAME VERSION",
    )
    p.add_argument("ref", metavar="NAME[:VERSION|@ALIAS]", type=_ref)
    p.add_argument("version", metavar="VERSION", type=int, nargs="?")
    p.add_argument("--alias", default=DEFAULT_ALIAS, help=f"default: {DEFAULT_ALIAS}")
    p.add_argument("--reason", default="", help="why, kept in the history")
    p = add("rollback", cmd_rollback, "move an alias back to the version it held before")
    p.add_argument("ref", metavar="NAME[@ALIAS]", type=_ref)
    p.add_argument("--alias", default=None, help=f"default: {DEFAULT_ALIAS}")
    p.add_argument("--reason", default="", help="why, kept in the history")
    p = add(
        "history",
        cmd_history,
        "every registration and alias move of a model (of one version, or one alias)",
    )
    p.add_argument("ref", metavar="NAME[:VERSION|@ALIAS]", type=_ref)
    p = add("verify", cmd_verify, "recompute every artifact's sha256; exit 1 on a mismatch")
    p.add_argument("ref", metavar="NAME", type=_ref, nargs="?")
    p = add(
        "sign",
        cmd_sign,
        "sign unsigned versions and alias moves with $MODELDEPLOY_SIGNING_KEY (run verify first)",
    )
    p.add_argument("ref", metavar="NAME[:VERSION]", nargs="?")
    p.add_argument(
        "--force", action="store_true", help="also re-sign records whose signature is wrong"
    )
    p = add(
        "fastpath",
        cmd_fastpath,
        "compile and verify a version's fast path and store it next to the version, so that "
        "replicas load it instead of compiling",
    )
    p.add_argument("ref", metavar="NAME[:VERSION|@ALIAS]", type=_ref)
    p.add_argument(
        "--require",
        action="store_true",
        help="exit 1 (and store nothing) when no verified fast path can serve",
    )
    p = add("score", cmd_score, "score a .npy, .csv or .parquet file with a version, in batches")
    p.add_argument("ref", metavar="NAME[:VERSION|@ALIAS]", type=_ref)
    p.add_argument("input", metavar="INPUT", help="a .npy, .csv or .parquet file")
    p.add_argument(
        "-o", "--output", required=True, help="where to write the scores (.npy, .csv or .parquet)"
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=100_000,
        metavar="N",
        help="rows per chunk (default: 100000)",
    )
    p.add_argument(
        "--n-jobs",
        type=int,
        default=None,
        metavar="N",
        help="parallel workers (default: every CPU)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its checkpoint"
    )
    p.add_argument("--proba", action="store_true", help="write class probabilities")
    p.add_argument(
        "--id-columns",
        nargs="*",
        metavar="COL",
        help="columns of a CSV/Parquet input to carry into the output",
    )
    p.add_argument(
        "--skip-errors",
        action="store_true",
        help="skip chunks that fail validation (exit 1 and list them) instead of stopping",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: when stderr is a terminal)",
    )
    return parser


def _open_registry(args: argparse.Namespace) -> ModelRegistry:
    root = getattr(args, "registry", None) or os.environ.get(ENV_REGISTRY) or DEFAULT_REGISTRY_ROOT
    artifacts = getattr(args, "artifacts", None) or os.environ.get(ENV_ARTIFACTS) or None
    if "://" in root:  # a server registry: credentials come from the environment
        return ModelRegistry(root, artifacts=artifacts)
    return ModelRegistry(_registry_root(root), artifacts=artifacts)


def _registry_root(root: str) -> Path:
    path = Path(root)
    if not (path / "registry.db").exists():
        raise CommandError(
            f"No registry at {str(path)!r}. Pass --registry PATH or set ${ENV_REGISTRY} to the "
            "folder given to ModelRegistry(...)."
        )
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag in ("json", "debug"):
        if not hasattr(args, flag):
            setattr(args, flag, False)
    try:
        reg = _open_registry(args)
        try:
            code: int = args.func(reg, args, sys.stdout)
            sys.stdout.flush()  # inside the try: a reader gone away is noticed here
        finally:
            reg.close()
        return code
    except BrokenPipeError:
        # The reader went away (`| head`). Point stdout at devnull so the flush at exit cannot
        # fail again, as https://docs.python.org/3/library/signal.html#note-on-sigpipe says.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except (ModelDeployError, CommandError) as exc:
        if args.debug:
            traceback.print_exc()
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"modeldeploy: error: {message}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # an unexpected failure: still one line unless --debug
        if args.debug:
            traceback.print_exc()
        print(
            f"modeldeploy: error: unexpected {type(exc).__name__}: {exc} (run with --debug for "
            "the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except KeyboardInterrupt:  # pragma: no cover - interactive
        print("modeldeploy: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
