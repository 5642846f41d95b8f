"""Typed run configuration: one TOML file per run, ``--set section.key=value`` overrides.

Every field has a default and a one-line help (``qingfin train --help-config`` prints them).
Unknown sections or keys are errors, never silently ignored; the fully resolved config is saved
in the run directory and inside the exported bundle.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints


def opt(default: Any, help: str) -> Any:
    """A dataclass field with a default and a one-line help text."""
    return field(default=default, metadata={"help": help})


@dataclass
class DataConfig:
    train: str = opt("data/processed/train.jsonl", "training rows (JSONL, qingfin row format)")
    dev: str = opt("data/processed/dev.jsonl", "dev rows: early stopping and model selection")
    calib: str = opt("data/processed/calib.jsonl", "calibration rows: temperatures and thresholds")
    test: str = opt("data/processed/test.jsonl", "test rows: final evaluation only")
    normalizer: str = opt(
        "zh_fin.v1", "versioned normalizer applied before tokenization (training and serving)"
    )
    max_length: int = opt(128, "maximum tokens per text; longer texts are truncated")
    augment: bool = opt(False, "add attack-suite disguised copies of positive training rows")
    augment_seed: int = opt(1234, "seed for augmentation (differs from evaluation's attack seed)")
    augment_copies: int = opt(1, "disguised copies per positive row when augment is on")


@dataclass
class ModelConfig:
    base: str = opt(
        "",
        "local Hugging Face BERT-family directory; empty = the prepared multilingual-e5-small base",
    )
    pooling: str = opt("mean", "sentence pooling: 'mean' (masked mean of tokens) or 'cls'")
    dropout: float = opt(0.1, "dropout before the classification head")
    layers: int = opt(0, "keep only the bottom N encoder layers (0 = all)")
    freeze_embeddings: bool = opt(
        False, "freeze the word embeddings (faster, fewer trainable parameters)"
    )
    init_from: str = opt(
        "",
        "warm start: a trained run's model/ directory (encoder, head and tokenizer); "
        "continues training it instead of starting a new head on the base (model.base is then unused)",
    )


@dataclass
class TrainConfig:
    output_dir: str = opt("runs/zhfin", "run directory: checkpoints, final model, resolved config")
    seed: int = opt(42, "random seed for initialisation, shuffling and dropout")
    epochs: float = opt(3.0, "training epochs")
    max_steps: int = opt(-1, "stop after this many optimizer steps (-1 = use epochs)")
    learning_rate: float = opt(5e-5, "peak learning rate (AdamW, linear decay)")
    weight_decay: float = opt(0.01, "AdamW weight decay")
    warmup_ratio: float = opt(0.06, "share of steps spent warming up the learning rate")
    batch_size: int = opt(16, "training batch size")
    eval_batch_size: int = opt(64, "evaluation batch size")
    group_by_length: bool = opt(
        True, "batch texts of similar length together (less padding, faster on CPU)"
    )
    pos_weight: bool = opt(True, "weight positives per label by negatives/positives in BCE")
    max_pos_weight: float = opt(10.0, "upper bound for the per-label positive weight")
    eval_steps: int = opt(0, "evaluate every N steps (0 = once per epoch)")
    early_stopping_patience: int = opt(
        2, "evaluations without dev macro-F1 improvement before stopping"
    )
    logging_steps: int = opt(20, "log training loss every N steps")
    threads: int = opt(0, "torch CPU threads (0 = torch's default)")
    max_minutes: float = opt(
        0.0, "stop gracefully after this much training time, keeping the best checkpoint (0 = no limit)"
    )
    teacher: str = opt(
        "",
        "distillation: a trained run's model/ directory whose probabilities soften the targets "
        "(several, comma-separated: an ensemble, logits averaged; 'tfidf-oof' adds out-of-fold TF-IDF + LR)",
    )
    distill_alpha: float = opt(
        0.5, "distillation: target = alpha * teacher probability + (1 - alpha) * gold label"
    )
    distill_temperature: float = opt(
        1.0, "distillation: teacher probabilities are sigmoid(logit / temperature)"
    )


@dataclass
class CalibrationConfig:
    method: str = opt(
        "platt", "probability calibration per label: 'platt' (scale and bias) or 'temperature'"
    )
    review_min_precision: float = opt(
        0.0, "review threshold: the most recall at this precision (0 = best F1)"
    )
    block_precision: float = opt(0.95, "block threshold: the most recall at this precision")
    precision_confidence: float = opt(
        0.0,
        "both precision targets must hold at this one-sided confidence (Wilson bound on calib), e.g. 0.9; 0 = as measured",
    )
    bootstrap_resamples: int = opt(
        0,
        "each threshold is the median of the rule's threshold over this many bootstrap resamples of calib "
        "(stable against one lucky row; odd, e.g. 201); 0 = the rule on calib as is",
    )
    bootstrap_seed: int = opt(0, "seed of the bootstrap resamples")
    review_min_probability: float = opt(
        0.0,
        "the review threshold is at least this calibrated probability (raised further if calib then misses the "
        "review precision): bounds the last row flagged, not just the average; 0 = no floor",
    )


@dataclass
class ExportConfig:
    name: str = opt("qingfin-zhfin", "model name recorded in the bundle")
    version: str = opt(
        "0.1.0", "bundle version: major = label schema, minor = retrain/recalibrate, patch = card"
    )
    opset: int = opt(18, "ONNX opset")
    parity_tolerance: float = opt(
        1e-4, "max |torch - onnxruntime| logit difference allowed for fp32"
    )
    int8_calibration_rows: int = opt(
        400, "first N rows of the calib split that fix the int8 model's activation ranges"
    )


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


class ConfigError(ValueError):
    """An unknown key, a wrong type, or a malformed override."""


def _coerce(value: Any, kind: type, where: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")


def _apply_section(section: Any, values: dict, name: str) -> None:
    hints = get_type_hints(type(section))
    known = {f.name for f in fields(section)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown key {name}.{key}; known: {', '.join(sorted(known))}")
        setattr(section, key, _coerce(value, hints[key], f"{name}.{key}"))


def apply_mapping(config: RunConfig, mapping: dict) -> RunConfig:
    """Apply a nested ``{section: {key: value}}`` mapping onto ``config`` (in place)."""
    sections = {f.name for f in fields(config)}
    for name, values in mapping.items():
        if name not in sections:
            raise ConfigError(f"unknown section [{name}]; known: {', '.join(sorted(sections))}")
        if not isinstance(values, dict):
            raise ConfigError(f"[{name}] must be a table")
        _apply_section(getattr(config, name), values, name)
    return config


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"train.epochs=3"`` → ``("train", "epochs", 3)``; values parse as TOML, else as strings."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    path, raw = text.split("=", 1)
    section, key = path.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, key, value


def load_config(path: str | Path | None, overrides: list[str] = ()) -> tuple[RunConfig, list[str]]:
    """Defaults ← TOML file ← overrides. Returns the config and the applied overrides as text."""
    config = RunConfig()
    if path is not None:
        with open(path, "rb") as handle:
            apply_mapping(config, tomllib.load(handle))
    applied = []
    for text in overrides:
        section, key, value = parse_override(text)
        apply_mapping(config, {section: {key: value}})
        applied.append(f"{section}.{key} = {getattr(getattr(config, section), key)!r}")
    return config, applied


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def to_toml(config: RunConfig) -> str:
    """The resolved config as TOML, with each field's help as a comment."""
    lines = []
    for section in fields(config):
        lines.append(f"[{section.name}]")
        for item in fields(getattr(config, section.name)):
            value = getattr(getattr(config, section.name), item.name)
            lines.append(f"{item.name} = {_toml_value(value)}  # {item.metadata['help']}")
        lines.append("")
    return "\n".join(lines)


def to_dict(config: RunConfig) -> dict:
    return dataclasses.asdict(config)
