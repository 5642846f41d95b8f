"""Warm start (``model.init_from``): continue training a trained run's encoder and head."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file


def _warm_config(tiny_config, tmp_path, init_from, **model_changes):
    return dataclasses.replace(
        tiny_config,
        model=dataclasses.replace(tiny_config.model, init_from=str(init_from), **model_changes),
        train=dataclasses.replace(tiny_config.train, output_dir=str(tmp_path / "warm"), learning_rate=0.0, weight_decay=0.0),
    )


def test_warm_start_keeps_the_trained_weights_and_their_provenance(tiny_config, tiny_run, tmp_path):
    from qingfin.training.train import train

    # Learning rate 0: the saved model is exactly what was loaded, so a head re-initialised from
    # the base (the bug this guards against) would show up as different weights.
    run_dir = train(_warm_config(tiny_config, tmp_path, tiny_run / "model"))
    before = load_file(str(tiny_run / "model" / "head.safetensors"))
    after = load_file(str(run_dir / "model" / "head.safetensors"))
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)
    summary = json.loads((run_dir / "train_summary.json").read_text())
    origin = json.loads((tiny_run / "train_summary.json").read_text())
    assert summary["init_from"] == str(tiny_run / "model")
    assert summary["base_manifest"] == origin["base_manifest"] and summary["base_manifest"]["kind"] == "tiny-random"


def test_warm_start_refuses_what_it_cannot_continue(tiny_config, tiny_run, tmp_path):
    from qingfin.training.train import train

    with pytest.raises(FileNotFoundError, match="head.json"):
        train(_warm_config(tiny_config, tmp_path, tiny_run))  # the run directory, not its model/
    with pytest.raises(ValueError, match="layers"):
        train(_warm_config(tiny_config, tmp_path, tiny_run / "model", layers=1))
    with pytest.raises(ValueError, match="pooling"):
        train(_warm_config(tiny_config, tmp_path, tiny_run / "model", pooling="cls"))
