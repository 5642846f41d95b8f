"""``qingfin train``: fine-tune a multi-label classifier with the Hugging Face ``Trainer``."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from qingfin.data.hashing import file_sha256
from qingfin.data.schema import LABELS
from qingfin.models.metrics import macro_f1_at_best
from qingfin.models.modeling import MultiLabelModel
from qingfin.serve.scoring import sigmoid
from qingfin.training.config import RunConfig, to_dict, to_toml
from qingfin.training.text_data import Split, augmented_rows, load_split, pos_weights
from qingfin.training.tokenizer_loading import load_tokenizer

logger = logging.getLogger(__name__)


class EncodedDataset(torch.utils.data.Dataset):
    """Tokenized texts with float multi-hot ``labels``; padding happens per batch in the collator."""

    def __init__(self, encodings: dict[str, list], y: np.ndarray):
        self.encodings = encodings
        self.y = y.astype(np.float32)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> dict:
        item = {key: values[index] for key, values in self.encodings.items()}
        item["labels"] = self.y[index].tolist()
        return item


def resolve_base(config: RunConfig) -> Path:
    """The configured base directory, or the prepared multilingual-e5-small base (built on demand)."""
    if config.model.base:
        return Path(config.model.base)
    from qingfin.training.base_prepare import prepare_base

    return Path(prepare_base())


def _encode(tokenizer, texts: list[str], y: np.ndarray, max_length: int) -> EncodedDataset:
    encodings = tokenizer(texts, truncation=True, max_length=max_length)
    return EncodedDataset(dict(encodings), y)


def _compute_metrics(eval_prediction) -> dict[str, float]:
    logits, labels = eval_prediction.predictions, eval_prediction.label_ids
    return {"macro_f1": macro_f1_at_best(labels, sigmoid(np.asarray(logits)))}


class TimeBudget(TrainerCallback):
    """Stop after ``minutes`` of training; the best evaluated checkpoint is still loaded at the end.

    For shared or leased machines: a run that would overrun its slot ends cleanly instead of
    being killed without a model.
    """

    def __init__(self, minutes: float):
        self.seconds = minutes * 60
        self.started = time.monotonic()

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() - self.started > self.seconds:
            logger.warning("time budget of %.1f min reached at step %d", self.seconds / 60, state.global_step)
            control.should_training_stop = True
        return control


def training_arguments(config: RunConfig, run_dir: Path, steps_per_epoch: int) -> TrainingArguments:
    """Build ``TrainingArguments`` explicitly from the run config (nothing implicit)."""
    t = config.train
    total_steps = t.max_steps if t.max_steps > 0 else math.ceil(steps_per_epoch * t.epochs)
    strategy = "steps" if t.eval_steps else "epoch"
    return TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        seed=t.seed,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=int(t.warmup_ratio * total_steps),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=t.eval_steps or None,
        save_steps=t.eval_steps or None,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="macro_f1",
        greater_is_better=True,
        logging_steps=t.logging_steps,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )


def train(config: RunConfig) -> Path:
    """Train, keep the best dev checkpoint, and write the run directory. Returns its path.

    Run directory: ``config.toml`` (resolved), ``model/`` (encoder, head, tokenizer),
    ``train_summary.json`` (data hashes, wall time, best dev macro-F1, steps).
    """
    started = time.time()
    run_dir = Path(config.train.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(to_toml(config), encoding="utf-8")
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    set_seed(config.train.seed)

    # Hash the data as read now: the files may change while a long run trains.
    data_sha256 = {name: file_sha256(getattr(config.data, name)) for name in ("train", "dev")}
    init_dir = Path(config.model.init_from) if config.model.init_from else None
    if init_dir:
        if not (init_dir / "head.json").is_file():
            raise FileNotFoundError(f"model.init_from={init_dir}: not a trained model directory (no head.json)")
        base_dir, base_manifest = _warm_start_origin(init_dir)
    else:
        base_dir = resolve_base(config)
        base_manifest = _base_manifest(base_dir)
    tokenizer = load_tokenizer(init_dir / "tokenizer", init_dir / "encoder") if init_dir else load_tokenizer(base_dir)
    train_split = load_split(config.data.train, config.data.normalizer)
    dev_split = load_split(config.data.dev, config.data.normalizer)
    if config.data.augment:
        extra = augmented_rows(
            train_split.rows, config.data.augment_seed, config.data.augment_copies
        )
        train_split = _extend(train_split, extra, config.data.normalizer)
    logger.info(
        "train rows %d, dev rows %d, base %s", len(train_split.rows), len(dev_split.rows), base_dir
    )

    if init_dir:
        model = warm_start_model(init_dir, config.model.layers, config.model.pooling)
    else:
        model = MultiLabelModel.from_base(
            base_dir, LABELS, config.model.pooling, config.model.dropout, config.model.layers
        )
    if config.model.freeze_embeddings:
        model.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    if config.train.pos_weight:
        model.set_pos_weight(torch.tensor(pos_weights(train_split.y, config.train.max_pos_weight)))

    targets = train_split.y  # gold multi-hot; pos_weight above was computed from these
    if config.train.teacher:
        from qingfin.training.distill import soft_targets, teacher_probabilities

        probabilities = teacher_probabilities(
            config.train.teacher,
            train_split.texts,
            LABELS,
            config.data.max_length,
            config.train.distill_temperature,
            config.train.eval_batch_size,
            y=train_split.y,
            groups=[str(r.get("attack_of", r.get("id", f"row{i}"))) for i, r in enumerate(train_split.rows)],
        )
        targets = soft_targets(train_split.y, probabilities, config.train.distill_alpha)
    train_data = _encode(tokenizer, train_split.texts, targets, config.data.max_length)
    dev_data = _encode(tokenizer, dev_split.texts, dev_split.y, config.data.max_length)
    steps_per_epoch = math.ceil(len(train_data) / config.train.batch_size)
    trainer = Trainer(
        model=model,
        args=training_arguments(config, run_dir, steps_per_epoch),
        train_dataset=train_data,
        eval_dataset=dev_data,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=_compute_metrics,
        callbacks=[
            EarlyStoppingCallback(early_stopping_patience=config.train.early_stopping_patience)
        ]
        + ([TimeBudget(config.train.max_minutes)] if config.train.max_minutes > 0 else []),
    )
    result = trainer.train()
    best = trainer.evaluate()

    model.save(run_dir / "model")
    tokenizer.save_pretrained(str(run_dir / "model" / "tokenizer"))
    summary = {
        "base": str(base_dir),
        "base_manifest": base_manifest,
        "init_from": str(init_dir) if init_dir else None,
        "data_sha256": data_sha256,
        "train_rows": len(train_split.rows),
        "dev_rows": len(dev_split.rows),
        "global_steps": result.global_step,
        "epochs_trained": round(float(trainer.state.epoch or 0), 3),
        "device": _device_name(),
        "best_dev_macro_f1": best.get("eval_macro_f1"),
        "wall_seconds": round(time.time() - started, 1),
        "config": to_dict(config),
    }
    (run_dir / "train_summary.json").write_text(
        json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    logger.info(
        "trained in %.0f s; best dev macro-F1 %.4f",
        summary["wall_seconds"],
        summary["best_dev_macro_f1"] or 0,
    )
    return run_dir


def _extend(split: Split, extra_rows: list[dict], normalizer_name: str) -> Split:
    from qingfin.data.normalize import get_normalizer
    from qingfin.data.schema import labels_matrix

    normalizer = get_normalizer(normalizer_name)
    return Split(
        split.rows + extra_rows,
        split.texts + [normalizer(r["text"]) for r in extra_rows],
        np.concatenate([split.y, labels_matrix([r["labels"] for r in extra_rows])]),
    )


def _device_name() -> str:
    """What trained the run (recorded because GPU and CPU runs are both used)."""
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {torch.get_num_threads()} threads"


def warm_start_model(model_dir: Path, layers: int, pooling: str) -> MultiLabelModel:
    """A trained model (encoder and head) to continue training, e.g. to finish a schedule a time
    budget cut short, or to fine-tune on relabeled data without re-learning the head. Its
    architecture comes from the saved model; config keys that disagree with it are errors."""
    model = MultiLabelModel.load(model_dir)
    if model.pooling != pooling:
        raise ValueError(f"model.pooling={pooling!r} but model.init_from={model_dir} pools with {model.pooling!r}")
    if tuple(model.labels) != tuple(LABELS):
        raise ValueError(f"model.init_from={model_dir}: labels {model.labels} differ from the schema's {tuple(LABELS)}")
    depth = model.encoder.config.num_hidden_layers
    if layers and layers != depth:
        raise ValueError(f"model.layers={layers} but model.init_from={model_dir} has {depth} layers (set 0 or {depth})")
    return model.train()


def _warm_start_origin(model_dir: Path) -> tuple[Path, dict | None]:
    """Where a warm start's weights first came from: the base directory and base manifest
    recorded by the run that trained ``model_dir`` (its ``train_summary.json``), so the new
    run's bundle still names the pretrained model and its licence. Falls back to the
    model's own encoder directory when that run left no summary."""
    summary_path = model_dir.parent / "train_summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    return Path(summary.get("base") or model_dir / "encoder"), summary.get("base_manifest")


def _base_manifest(base_dir: Path) -> dict | None:
    path = base_dir / "base_manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
