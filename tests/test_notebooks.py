"""The notebooks in ``notebooks/`` run end to end on the tiny bundle and the fixture splits, write
their output files, and are committed with outputs stripped.

Each notebook runs in a fresh ``python3`` kernel (this interpreter, via jupyter_client) in a
temporary directory; paths reach it through the QINGFIN_* environment variables its first cell
reads, so nothing is written into the repository.
"""

import json
import shutil
import time
from pathlib import Path

import pytest

from qingfin.data.rows import read_rows
from qingfin.data.schema import LABELS

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
OUTPUT_FILES = {
    "01_dataset_overview.ipynb": "dataset_overview.json",
    "02_error_analysis.ipynb": "relabel_candidates.jsonl",
    "03_threshold_tradeoffs.ipynb": "candidate_thresholds.json",
}
CELL_TIMEOUT_S = 55  # nbclient's limit per cell
NOTEBOOK_BUDGET_S = 60  # and for a whole notebook, kernel start included (they take ~3-5 s)


def committed_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_every_notebook_is_covered():
    assert [path.name for path in committed_notebooks()] == sorted(OUTPUT_FILES)


@pytest.mark.parametrize("path", committed_notebooks(), ids=lambda p: p.name)
def test_committed_notebooks_are_stripped(path):
    """Outputs and execution counts make diffs unreadable and can leak data rows into git."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    dirty = [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} have outputs or execution counts; strip them before committing"
    )
    first_code = next(cell for cell in notebook.cells if cell.cell_type == "code")
    assert "parameters" in first_code.metadata.get("tags", []), (
        "the first code cell must be the tagged parameters cell"
    )
    assert "QINGFIN_" in first_code.source


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, fixture_paths) -> Path:
    directory = tmp_path_factory.mktemp("notebook-data")
    for path in fixture_paths.values():
        shutil.copy(path, directory / path.name)
    return directory


@pytest.fixture(scope="module")
def executed(tiny_bundle, data_dir, tmp_path_factory):
    """Run a notebook by name, once per module; returns (executed notebook, output directory, seconds)."""
    done: dict = {}

    def run(name: str):
        if name not in done:
            done[name] = execute(name)
        return done[name]

    def execute(name: str):
        workdir = tmp_path_factory.mktemp(name.removesuffix(".ipynb"))
        out = workdir / "out"
        env = {
            "QINGFIN_BUNDLE": str(tiny_bundle),
            "QINGFIN_DATA_DIR": str(data_dir),
            "QINGFIN_DATA": str(data_dir / "dev.jsonl"),
            "QINGFIN_OUT": str(out),
            "MPLBACKEND": "Agg",
            "TOKENIZERS_PARALLELISM": "false",
        }
        with (
            pytest.MonkeyPatch.context() as patch
        ):  # the kernel inherits this process's environment
            for key, value in env.items():
                patch.setenv(key, value)
            notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
            client = nbclient.NotebookClient(
                notebook,
                timeout=CELL_TIMEOUT_S,
                startup_timeout=60,
                kernel_name="python3",
                resources={"metadata": {"path": str(workdir)}},
            )
            started = time.perf_counter()
            client.execute()  # raises CellExecutionError, with the traceback, if a cell fails
            return notebook, out, time.perf_counter() - started

    return run


@pytest.mark.parametrize("name", sorted(OUTPUT_FILES))
def test_notebook_executes_and_writes_its_output(name, executed):
    notebook, out, seconds = executed(name)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert (out / OUTPUT_FILES[name]).is_file(), f"{name} did not write {OUTPUT_FILES[name]}"
    assert seconds < NOTEBOOK_BUDGET_S, f"{name} took {seconds:.1f} s on the tiny bundle"
    CHECKS[name](out / OUTPUT_FILES[name])


def test_candidate_thresholds_work_as_serving_overrides(executed, tiny_bundle):
    from qingfin.serve import Classifier

    _, out, _ = executed("03_threshold_tradeoffs.ipynb")
    document = json.loads((out / "candidate_thresholds.json").read_text(encoding="utf-8"))
    overrides = {
        label: {"review": v["review"], "block": v["block"]}
        for label, v in document["labels"].items()
    }
    prediction = Classifier.load(tiny_bundle).predict(["加薇信领额度"], thresholds=overrides)[0]
    assert prediction.decision in {"pass", "review", "block"}


def _check_overview(path: Path) -> None:
    overview = json.loads(path.read_text(encoding="utf-8"))
    assert list(overview["splits"]) == ["train", "dev", "calib", "test"]
    assert all(split["rows"] == 48 for split in overview["splits"].values())
    assert {record["label"] for record in overview["counts"]} <= {*LABELS, "(clean)"}
    assert overview["licences"][0]["source"] == "authored"


def _check_relabel(path: Path) -> None:
    rows = read_rows(path)  # still valid dataset rows
    assert rows, "the tiny model makes mistakes, so some rows should be exported"
    assert all(row["id"].startswith("dev-") for row in rows)  # QINGFIN_DATA was honoured
    assert all(
        row["relabel"]["reasons"] and set(row["relabel"]["scores"]) == set(LABELS) for row in rows
    )


def _check_thresholds(path: Path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    assert {"policy", "calibration_data_sha256", "labels"} <= set(document)
    assert list(document["labels"]) == list(LABELS)
    for values in document["labels"].values():
        assert 0.0 <= values["review"] <= values["block"] <= 1.0
        assert {"review_method", "block_method", "notes"} <= set(values)
    assert (
        len(document["calibration_data_sha256"]) == 64
        and document["derived_from"]["version"] == "0.0.1"
    )


CHECKS = {
    "01_dataset_overview.ipynb": _check_overview,
    "02_error_analysis.ipynb": _check_relabel,
    "03_threshold_tradeoffs.ipynb": _check_thresholds,
}
