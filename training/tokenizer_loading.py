"""Loading a base model's tokenizer safely (transformers can silently lose a vocabulary)."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerFast

MODEL_INPUT_NAMES = ["input_ids", "token_type_ids", "attention_mask"]


def load_tokenizer(base_dir: str | Path, encoder_dir: str | Path | None = None) -> PreTrainedTokenizerFast:
    """The fast tokenizer of a local model directory, checked against the encoder's vocabulary.

    ``encoder_dir`` holds the encoder's ``config.json`` when it is not ``base_dir`` (a trained
    run keeps them in ``model/tokenizer`` and ``model/encoder``).

    Raises when the tokenizer's vocabulary is much smaller than the embedding matrix, the
    symptom of a vocabulary that was silently not loaded.
    """
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir), model_input_names=MODEL_INPUT_NAMES)
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise ValueError(f"{base_dir}: a fast tokenizer (tokenizer.json) is required for ONNX serving")
    vocab_size = AutoConfig.from_pretrained(str(encoder_dir or base_dir)).vocab_size
    if not 0.9 * vocab_size <= len(tokenizer) <= vocab_size:
        raise ValueError(
            f"{base_dir}: tokenizer has {len(tokenizer)} entries but the encoder has {vocab_size} "
            "embedding rows; the vocabulary was not loaded correctly"
        )
    return tokenizer
