"""How long ``import modeldeploy`` takes, next to ``import numpy`` (the floor: it needs numpy).

Runs ``python -X importtime -c "import modeldeploy"`` (and the same for numpy) in fresh
processes, reads the cumulative microseconds the interpreter reports for the top-level package,
and prints the medians and their difference, with the CPU time the import took (less sensitive
than wall time to other jobs on a shared machine). ``--baseline SRC`` measures the same import
from a copy of another version's sources (``git archive <commit> src | tar -x -C /tmp/base``;
its bytecode is written there) in the same runs, interleaved. Also lists which heavy modules
the import pulls in (none of scipy, scikit-learn, joblib, asyncio, importlib.metadata is
expected).
Run: python benchmarks/import_time.py [--repeats N] [--baseline SRC]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

HEAVY = ("scipy", "sklearn", "joblib", "importlib.metadata", "asyncio", "pandas", "pyarrow")


def cumulative_s(module: str, src: str | None = None) -> tuple[float, float]:
    """Cumulative import time of ``module`` in a fresh interpreter (from ``src`` when given),
    and the CPU time of that import, in seconds."""
    code = (
        "import time, sys\n"
        + (f"sys.path.insert(0, {src!r})\n" if src else "")
        + f"t = time.process_time()\nimport {module}\nprint(time.process_time() - t)"
    )
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in done.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1]) / 1e6, float(done.stdout.strip())
    raise RuntimeError(f"python -X importtime printed no line for {module}")


#: What programs write: the first use of the classes loads their parts (PEP 562).
STATEMENTS = {
    "from modeldeploy import OnlineDeployer": "from modeldeploy import OnlineDeployer",
    "the six classes": (
        "from modeldeploy import (BatchDeployer, HybridRouter, ModelRegistry, Monitor, "
        "OnlineDeployer, RetrainPolicy)"
    ),
}


def statement_s(statement: str) -> tuple[float, float]:
    """Wall and CPU seconds of one statement, the first thing a fresh interpreter runs."""
    code = (
        "import time\nt, c = time.perf_counter(), time.process_time()\n"
        f"{statement}\nprint(time.perf_counter() - t, time.process_time() - c)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall, cpu = done.stdout.split()
    return float(wall), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline", help="another source tree's src folder to compare with")
    args = parser.parse_args()
    cumulative_s("modeldeploy")  # compile the .pyc files first
    if args.baseline:
        cumulative_s("modeldeploy", args.baseline)
    runs: dict[str, list[tuple[float, float]]] = {"ours": [], "numpy": [], "baseline": []}
    for label in STATEMENTS:
        runs[label] = []
    for _ in range(args.repeats):
        for label, statement in STATEMENTS.items():
            runs[label].append(statement_s(statement))
        runs["ours"].append(cumulative_s("modeldeploy"))
        runs["numpy"].append(cumulative_s("numpy"))
        if args.baseline:
            runs["baseline"].append(cumulative_s("modeldeploy", args.baseline))
    ours, ours_cpu = (statistics.median(x) for x in zip(*runs["ours"], strict=True))
    floor, floor_cpu = (statistics.median(x) for x in zip(*runs["numpy"], strict=True))
    code = "import sys, json, modeldeploy; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    )
    heavy = [m for m in HEAVY if m in loaded]
    n = args.repeats
    print(f"median of {n} runs         cumulative (importtime)   CPU time")
    print(f"import modeldeploy         {ours * 1e3:10.1f} ms {ours_cpu * 1e3:14.1f} ms")
    print(f"import numpy (floor)       {floor * 1e3:10.1f} ms {floor_cpu * 1e3:14.1f} ms")
    print(f"modeldeploy over numpy     {(ours - floor) * 1e3:10.1f} ms")
    for label in STATEMENTS:
        wall, cpu = (statistics.median(x) for x in zip(*runs[label], strict=True))
        print(f"{label:27s}{wall * 1e3:10.1f} ms {cpu * 1e3:14.1f} ms  (wall time)")
    if runs["baseline"]:
        base, base_cpu = (statistics.median(x) for x in zip(*runs["baseline"], strict=True))
        print(f"baseline {args.baseline}: {base * 1e3:.1f} ms, CPU {base_cpu * 1e3:.1f} ms")
    print(f"heavy modules imported: {heavy or 'none'}")


if __name__ == "__main__":
    main()
