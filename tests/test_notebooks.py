"""The tutorial notebooks run headless and are committed without outputs.

Each notebook is executed by nbclient in a fresh kernel of *this* interpreter (a kernel spec
written to a temporary directory, so a ``python3`` kernel registered elsewhere on the machine
cannot be picked up instead) with a temporary working directory: a notebook that depended on
the checkout's layout or wrote files next to itself would fail or leave traces here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
#: Seconds any one cell may take (the slowest cell takes a few seconds on 2 busy cores).
CELL_TIMEOUT = 120


def _kernel_manager(tmp: Path):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    spec_dir = tmp / "kernels" / "accelsim-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "accelsim test kernel", "language": "python"}))
    specs = KernelSpecManager(kernel_dirs=[str(spec_dir.parent)])
    return KernelManager(kernel_name="accelsim-test", kernel_spec_manager=specs)


def test_the_three_tutorials_exist():
    assert [p.name for p in NOTEBOOKS] == ["01-quickstart.ipynb", "02-design-space.ipynb",
                                           "03-paper-claims.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} have outputs or execution counts; clear "
                       f"them before committing (jupyter nbconvert --clear-output --inplace)")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_headless_without_errors(path, tmp_path):
    work = tmp_path / "cwd"
    work.mkdir()
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, km=_kernel_manager(tmp_path), timeout=CELL_TIMEOUT,
                                     resources={"metadata": {"path": str(work)}})
    client.execute()   # raises CellExecutionError, naming the cell, on the first error
    errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
              if out.output_type == "error"]
    assert not errors
    figures = sum("image/png" in out.get("data", {}) for cell in nb.cells
                  if cell.cell_type == "code" for out in cell.outputs)
    assert figures >= 1, "every tutorial draws at least one figure"
    assert list(work.iterdir()) == [], "a notebook wrote files into its working directory"
