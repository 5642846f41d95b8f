"""``qingfin calibrate RUN_DIR``: calibration (Platt or temperature) and review/block thresholds from the calib split."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

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

    review = config.calibration.review_min_precision or None
    policy = ThresholdPolicy(review_min_precision=review, block_precision=config.calibration.block_precision,
                             precision_confidence=config.calibration.precision_confidence or None)
    method = config.calibration.method
    temperatures, biases, thresholds = calibrate(logits, split.y, LABELS, policy, method)
    data_hash = file_sha256(calib_path)
    ece_before = expected_calibration_error(split.y, sigmoid(logits))
    ece_after = expected_calibration_error(split.y, calibrated_probs(logits, temperatures, biases))

    calibration = {
        "method": method,
        "fitted_on": {"file": str(calib_path), "sha256": data_hash, "rows": len(split.rows)},
        "per_label": {
            label: {
                "temperature": float(temperature),
                "bias": float(bias),
                "ece_before": float(before),
                "ece_after": float(after),
            }
            for label, temperature, bias, before, after in zip(
                LABELS, temperatures, biases, ece_before, ece_after
            )
        },
    }
    thresholds_doc = {
        "policy": policy.document(),
        "calibration_data_sha256": data_hash,
        "labels": thresholds,
    }
    _write_json(run_dir / "calibration.json", calibration)
    _write_json(run_dir / "thresholds.json", thresholds_doc)
    for label in LABELS:
        for note in thresholds[label]["notes"]:
            logger.warning("%s: %s", label, note)
    return {"calibration": calibration, "thresholds": thresholds_doc}


def _write_json(path: Path, document: dict) -> None:
    path.write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
