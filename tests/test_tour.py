"""The notebook tour runs top to bottom, so it can never rot; it is saved without outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TOUR = Path(__file__).resolve().parents[1] / "examples" / "tour.ipynb"


def test_tour_is_saved_without_outputs() -> None:
    cells = json.loads(TOUR.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code, "the tour has code cells"
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)


@pytest.mark.slow
def test_tour_executes_top_to_bottom(tmp_path: Path) -> None:
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(TOUR, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Traceback" not in text
    assert "Warning" not in text, text  # e.g. tqdm without ipywidgets
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, "the report's plots are shown inline"
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("<table" in h for h in html), "registry, versions and reports render as tables"
