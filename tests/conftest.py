"""Shared fixtures: a tiny random Chinese BERT and a trained, calibrated, exported tiny bundle.

Everything is built locally in a temporary directory (no downloads, nothing written into the
repository). The session-scoped bundle is reused by the serving, CLI and batch tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent


@pytest.fixture(scope="session")
def fixture_paths() -> dict[str, Path]:
    return {split: FIXTURES / f"{split}.jsonl" for split in ("train", "dev", "calib", "test")}


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, fixture_paths) -> Path:
    from qingfin.data.rows import read_rows
    from qingfin.training.tiny_base import build_tiny_base

    texts = [row["text"] for row in read_rows(fixture_paths["train"])]
    return build_tiny_base(texts, tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory, tiny_base, fixture_paths):
    from qingfin.training.config import load_config

    run_dir = tmp_path_factory.mktemp("tiny-run")
    overrides = [f"data.{split}={str(path)!r}" for split, path in fixture_paths.items()] + [
        f"model.base={str(tiny_base)!r}",
        f"train.output_dir={str(run_dir)!r}",
        "train.max_steps=2",
        "train.batch_size=8",
        "train.eval_steps=1",
        "train.logging_steps=1",
        "train.learning_rate=0.001",
        "data.max_length=64",
        "export.version='0.0.1'",
    ]
    return load_config(REPO / "training" / "configs" / "tiny.toml", overrides)[0]


@pytest.fixture(scope="session")
def tiny_run(tiny_config) -> Path:
    """A 2-step training run, calibrated."""
    from qingfin.training.calibrate import calibrate_run
    from qingfin.training.train import train

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_dir = train(tiny_config)
    calibrate_run(run_dir)
    return run_dir


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run, tmp_path_factory) -> Path:
    from qingfin.models.export import export_run

    return export_run(tiny_run, tmp_path_factory.mktemp("bundles") / "tiny")
