"""``qingfin calibrate RUN_DIR``: calibration (Platt or temperature) and review/block thresholds from the calib split."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qingfin.data.hashing import file_sha256
from qingfin.data.schema import LABELS
from qingfin.models.calibration import ThresholdPolicy, calibrate
from qingfin.models.metrics import expected_calibration_error
from qingfin.models.modeling import MultiLabelModel, torch_logits
from qingfin.serve.scoring import calibrated_probs, sigmoid
from qingfin.training.config import ConfigError, RunConfig, load_config
from qingfin.training.text_data import load_split
from qingfin.training.tokenizer_loading import load_tokenizer

logger = logging.getLogger(__name__)


def run_config(run_dir: Path, overrides: Sequence[str] = ()) -> RunConfig:
    return load_config(run_dir / "config.toml", list(overrides))[0]


def policy_from_config(config: RunConfig) -> ThresholdPolicy:
    return ThresholdPolicy(review_min_precision=config.calibration.review_min_precision or None,
                           block_precision=config.calibration.block_precision,
                           precision_confidence=config.calibration.precision_confidence or None,
                           bootstrap_resamples=config.calibration.bootstrap_resamples,
                           bootstrap_seed=config.calibration.bootstrap_seed,
                           review_min_probability=config.calibration.review_min_probability)


def calibration_documents(logits: np.ndarray, y_true: np.ndarray, policy: ThresholdPolicy, method: str,
                          fitted_on: dict) -> tuple[dict, dict]:
    """``calibration.json`` and ``thresholds.json`` documents fitted on calib ``logits[N, K]``.

    ``fitted_on`` describes the scores (``file``, ``sha256``, ``rows``, and for a bundle the
    ``graph`` they came from); it is recorded so a bundle says what its thresholds were fit on.
    """
    temperatures, biases, thresholds = calibrate(logits, y_true, LABELS, policy, method)
    ece_before = expected_calibration_error(y_true, sigmoid(logits))
    ece_after = expected_calibration_error(y_true, calibrated_probs(logits, temperatures, biases))
    calibration = {
        "method": method,
        "fitted_on": dict(fitted_on),
        "per_label": {
            label: {"temperature": float(temperature), "bias": float(bias), "ece_before": float(before), "ece_after": float(after)}
            for label, temperature, bias, before, after in zip(LABELS, temperatures, biases, ece_before, ece_after)
        },
    }
    thresholds_doc = {"policy": policy.document(), "calibration_data_sha256": fitted_on["sha256"], "labels": thresholds}
    return calibration, thresholds_doc


def calibrate_run(run_dir: str | Path, calib_path: str | None = None, overrides: Sequence[str] = ()) -> dict:
    """Fit per-label calibration and thresholds; write ``calibration.json`` and ``thresholds.json``.

    ``overrides`` (``"calibration.KEY=VALUE"``) change the threshold policy for this calibration
    only; ``thresholds.json`` records the policy actually used. Returns a summary with ECE per
    label before and after calibration.
    """
    run_dir = Path(run_dir)
    for text in overrides:
        if not text.strip().startswith("calibration."):
            raise ConfigError(f"calibrate only overrides [calibration] keys, got {text!r}")
    config = run_config(run_dir, overrides)
    calib_path = calib_path or config.data.calib
    split = load_split(calib_path, config.data.normalizer)
    model = MultiLabelModel.load(run_dir / "model")
    tokenizer = load_tokenizer(run_dir / "model" / "tokenizer", run_dir / "model" / "encoder")
    logits = torch_logits(model, tokenizer, split.texts, config.data.max_length, config.train.eval_batch_size)

    calibration, thresholds_doc = calibration_documents(
        logits, split.y, policy_from_config(config), config.calibration.method,
        {"file": str(calib_path), "sha256": file_sha256(calib_path), "rows": len(split.rows)})
    _write_json(run_dir / "calibration.json", calibration)
    _write_json(run_dir / "thresholds.json", thresholds_doc)
    for label in LABELS:
        for note in thresholds_doc["labels"][label]["notes"]:
            logger.warning("%s: %s", label, note)
    return {"calibration": calibration, "thresholds": thresholds_doc}


def _write_json(path: Path, document: dict) -> None:
    path.write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
