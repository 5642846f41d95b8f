"""``train.max_minutes``: a run that reaches its time budget stops cleanly with a model."""

import dataclasses
import json


def test_time_budget_stops_training_after_the_first_step(tiny_config, tmp_path):
    from qingfin.training.train import train

    config = dataclasses.replace(
        tiny_config,
        train=dataclasses.replace(
            tiny_config.train, output_dir=str(tmp_path / "budget"), max_steps=50, max_minutes=1e-6
        ),
    )
    run_dir = train(config)
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["global_steps"] == 1  # checked after every step: the first one already overran
    assert (run_dir / "model" / "head.safetensors").is_file()
    assert summary["best_dev_macro_f1"] is not None
