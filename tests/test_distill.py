"""Distillation: a student trains on targets softened by a trained teacher's probabilities."""

import dataclasses
import json
import shutil

import numpy as np
import pytest

from qingfin.data.schema import LABELS
from qingfin.training.distill import soft_targets, teacher_directories, teacher_probabilities


def test_teacher_probabilities_soften_with_temperature(tiny_run):
    texts = ["加微信领取内部额度", "今天天气不错", ""]
    probabilities = teacher_probabilities(tiny_run / "model", texts, LABELS, max_length=64)
    assert probabilities.shape == (3, len(LABELS))
    assert np.all((probabilities > 0) & (probabilities < 1))
    # A higher temperature pulls every probability towards 0.5.
    softer = teacher_probabilities(tiny_run / "model", texts, LABELS, max_length=64, temperature=4.0)
    assert np.all(np.abs(softer - 0.5) <= np.abs(probabilities - 0.5) + 1e-6)


def test_teacher_must_share_the_label_set(tiny_run):
    with pytest.raises(ValueError, match="labels"):
        teacher_probabilities(tiny_run / "model", ["文本"], LABELS[::-1], max_length=64)
    with pytest.raises(FileNotFoundError, match="head.json"):
        teacher_probabilities(tiny_run, ["文本"], LABELS, max_length=64)


def test_several_teachers_average_their_logits(tiny_run, tmp_path):
    from safetensors.numpy import load_file, save_file

    from qingfin.serve.scoring import sigmoid

    # A second teacher: the same model with every head bias raised by 2, so its logits are +2.
    shifted = tmp_path / "shifted"
    shutil.copytree(tiny_run / "model", shifted)
    head = load_file(shifted / "head.safetensors")
    save_file({**head, "bias": head["bias"] + 2.0}, shifted / "head.safetensors")

    texts = ["加微信领取内部额度", "今天天气不错"]
    one = teacher_probabilities(tiny_run / "model", texts, LABELS, max_length=64)
    both = teacher_probabilities(f"{tiny_run / 'model'}, {shifted}", texts, LABELS, max_length=64, temperature=2.0)
    logits = np.log(one) - np.log1p(-one)
    np.testing.assert_allclose(both, sigmoid((logits + 1.0) / 2.0), atol=1e-5)  # mean logit = own + 1


def test_teacher_directories_reject_empty_entries():
    assert [p.name for p in teacher_directories("a/model, b/model")] == ["model", "model"]
    with pytest.raises(ValueError, match="comma"):
        teacher_directories("a/model,,b/model")


def test_soft_targets_validate_their_inputs():
    with pytest.raises(ValueError, match="alpha"):
        soft_targets(np.zeros((1, 2)), np.zeros((1, 2)), alpha=1.5)
    with pytest.raises(ValueError, match="differ"):
        soft_targets(np.zeros((1, 2)), np.zeros((2, 2)), alpha=0.5)


def test_student_run_records_its_teacher(tiny_config, tiny_run, tmp_path):
    from qingfin.training.train import train

    config = dataclasses.replace(
        tiny_config,
        train=dataclasses.replace(
            tiny_config.train,
            output_dir=str(tmp_path / "student"),
            teacher=str(tiny_run / "model"),
            distill_alpha=0.7,
        ),
    )
    run_dir = train(config)
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["config"]["train"]["teacher"] == str(tiny_run / "model")
    assert summary["config"]["train"]["distill_alpha"] == 0.7
    assert summary["global_steps"] == 2 and summary["device"]
