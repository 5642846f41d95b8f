"""The network: any Hugging Face BERT-family encoder + pooling + a linear multi-label head.

Saved as plain files: ``encoder/`` (``save_pretrained``, safetensors), ``head.safetensors`` and
``head.json`` (pooling, labels, dropout). No pickles.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel

POOLINGS = ("mean", "cls")


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over tokens: ``hidden[B, T, H]``, ``attention_mask[B, T]`` → ``[B, H]``."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-6)


class MultiLabelModel(nn.Module):
    """Encoder → pooled sentence vector → dropout → linear → ``logits[B, K]``.

    ``forward`` returns ``{"logits"}`` and, when ``labels[B, K]`` is given, ``"loss"``: BCE with
    logits and optional per-label ``pos_weight`` (the Hugging Face ``Trainer`` contract).
    """

    def __init__(self, encoder: nn.Module, labels: Sequence[str], pooling: str = "mean", dropout: float = 0.1):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.encoder = encoder
        self.labels = tuple(labels)
        self.pooling = pooling
        self.dropout_rate = dropout
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, len(self.labels))
        self.register_buffer("pos_weight", torch.ones(len(self.labels)), persistent=False)
        # Recorded for readers of the saved encoder config; the loss below is what trains.
        encoder.config.problem_type = "multi_label_classification"

    @classmethod
    def from_base(
        cls, base_dir: str | Path, labels: Sequence[str], pooling: str = "mean", dropout: float = 0.1, layers: int = 0
    ) -> MultiLabelModel:
        """Start from a local pretrained encoder directory, optionally keeping the bottom ``layers``."""
        config = AutoConfig.from_pretrained(base_dir)
        if layers and layers < config.num_hidden_layers:
            config.num_hidden_layers = layers  # from_pretrained then loads only the bottom layers
        encoder = AutoModel.from_pretrained(base_dir, config=config, add_pooling_layer=False, attn_implementation="eager")
        return cls(encoder, labels, pooling=pooling, dropout=dropout)

    def set_pos_weight(self, pos_weight: torch.Tensor) -> None:
        self.pos_weight = pos_weight.to(self.classifier.weight.device, torch.float32)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        pooled = mean_pool(hidden, attention_mask) if self.pooling == "mean" else hidden[:, 0]
        logits = self.classifier(self.dropout(pooled))
        output = {"logits": logits}
        if labels is not None:
            output["loss"] = nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), pos_weight=self.pos_weight)
        return output

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.encoder.save_pretrained(directory / "encoder")
        save_file({k: v.contiguous() for k, v in self.classifier.state_dict().items()}, str(directory / "head.safetensors"))
        head = {"labels": list(self.labels), "pooling": self.pooling, "dropout": self.dropout_rate}
        (directory / "head.json").write_text(json.dumps(head, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> MultiLabelModel:
        directory = Path(directory)
        head = json.loads((directory / "head.json").read_text(encoding="utf-8"))
        encoder = AutoModel.from_pretrained(directory / "encoder", add_pooling_layer=False, attn_implementation="eager")
        model = cls(encoder, head["labels"], pooling=head["pooling"], dropout=head["dropout"])
        model.classifier.load_state_dict(load_file(str(directory / "head.safetensors")))
        return model.eval()


class LogitsOnly(nn.Module):
    """Export wrapper: positional inputs, a single ``logits`` output (what ONNX serves)."""

    def __init__(self, model: MultiLabelModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)["logits"]


@torch.no_grad()
def torch_logits(model: MultiLabelModel, tokenizer, texts: Sequence[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    """Eager-mode logits ``[N, K]`` float32 for already-normalized texts (length-sorted batches)."""
    model.eval()
    device = model.classifier.weight.device  # a teacher may sit on a GPU while training
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), len(model.labels)), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        batch = tokenizer([texts[i] for i in index], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        inputs = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        out[index] = model(**inputs)["logits"].float().cpu().numpy()
    return out
