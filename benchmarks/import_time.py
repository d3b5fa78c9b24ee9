"""How long ``import modeldeploy`` takes, next to ``import numpy`` (the floor: it needs numpy).

Runs ``python -X importtime -c "import modeldeploy"`` (and the same for numpy) in fresh
processes, reads the cumulative microseconds the interpreter reports for the top-level package,
and prints the medians and their difference. Also lists which heavy modules the import pulls in
(none of scipy, scikit-learn, joblib, asyncio, importlib.metadata is expected).
Run: python benchmarks/import_time.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

HEAVY = ("scipy", "sklearn", "joblib", "importlib.metadata", "asyncio", "pandas", "pyarrow")


def cumulative_s(module: str) -> float:
    """Cumulative import time of ``module`` in a fresh interpreter, in seconds."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    for line in out.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1]) / 1e6
    raise RuntimeError(f"python -X importtime printed no line for {module}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cumulative_s("modeldeploy")  # compile the .pyc files first
    ours = statistics.median(cumulative_s("modeldeploy") for _ in range(args.repeats))
    floor = statistics.median(cumulative_s("numpy") for _ in range(args.repeats))
    code = "import sys, json, modeldeploy; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    )
    heavy = [m for m in HEAVY if m in loaded]
    print(f"import modeldeploy (cumulative, median of {args.repeats}): {ours * 1e3:7.1f} ms")
    print(f"import numpy       (cumulative, median of {args.repeats}): {floor * 1e3:7.1f} ms")
    print(f"modeldeploy over numpy:                        {(ours - floor) * 1e3:7.1f} ms")
    print(f"heavy modules imported: {heavy or 'none'}")


if __name__ == "__main__":
    main()
