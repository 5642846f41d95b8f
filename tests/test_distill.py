"""Distillation: a student trains on targets softened by a trained teacher's probabilities."""

import dataclasses
import json
import shutil

import numpy as np
import pytest

from qingfin.data.schema import LABELS
from qingfin.training.distill import (
    OUT_OF_FOLD_TFIDF,
    out_of_fold_tfidf_logits,
    soft_targets,
    teacher_directories,
    teacher_probabilities,
)


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


def _auc(scores: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(np.mean([roc_auc_score(y[:, k], scores[:, k]) for k in range(y.shape[1])]))


def test_out_of_fold_tfidf_never_scores_a_row_with_a_model_that_saw_its_group():
    # 60 texts of random characters with random labels, each with an exact "disguised copy":
    # nothing generalises, so only a model that saw a row's twin can score it well.
    rng = np.random.default_rng(0)
    alphabet = list("赚钱贷款加微信内部渠道稳赚不赔高额回报代办征信口子返利")
    originals = ["".join(rng.choice(alphabet, size=12)) for _ in range(60)]
    texts = originals + originals
    y = np.tile(rng.integers(0, 2, size=(60, 2)), (2, 1))
    own_groups = [f"r{i}" for i in range(60)] * 2  # a copy shares its original's group

    grouped = out_of_fold_tfidf_logits(texts, y, own_groups)
    assert grouped.shape == y.shape and np.isfinite(grouped).all()
    assert _auc(grouped, y) < 0.75
    # The leak the grouping prevents: with every row its own group, a copy's twin is in the fit.
    leaky = out_of_fold_tfidf_logits(texts, y, [f"x{i}" for i in range(120)])
    assert _auc(leaky, y) > 0.9


def test_tfidf_teacher_joins_the_ensemble_and_needs_labels_and_groups(tiny_run):
    from qingfin.serve.scoring import sigmoid

    texts = ["加微信领取内部额度", "今天天气不错", "无抵押秒批贷款", "新闻：警方提示防范诈骗", "代开发票私聊", "周末去爬山"] * 2
    y = np.zeros((len(texts), len(LABELS)), dtype=int)
    y[[0, 2, 4, 6, 8, 10], 1] = 1
    groups = [str(i) for i in range(len(texts))]
    with pytest.raises(ValueError, match="labels and row groups"):
        teacher_probabilities(OUT_OF_FOLD_TFIDF, texts, LABELS, max_length=64)

    both = teacher_probabilities(f"{tiny_run / 'model'},{OUT_OF_FOLD_TFIDF}", texts, LABELS, max_length=64, y=y, groups=groups)
    network = teacher_probabilities(tiny_run / "model", texts, LABELS, max_length=64)
    network_logits = np.log(network) - np.log1p(-network)
    np.testing.assert_allclose(both, sigmoid((network_logits + out_of_fold_tfidf_logits(texts, y, groups)) / 2), atol=1e-5)


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
            teacher=f"{tiny_run / 'model'},{OUT_OF_FOLD_TFIDF}",  # train() hands the tfidf teacher labels and groups
            distill_alpha=0.7,
        ),
    )
    run_dir = train(config)
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["config"]["train"]["teacher"] == f"{tiny_run / 'model'},{OUT_OF_FOLD_TFIDF}"
    assert summary["config"]["train"]["distill_alpha"] == 0.7
    assert summary["global_steps"] == 2 and summary["device"]
