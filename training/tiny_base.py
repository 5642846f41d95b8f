"""A tiny random Chinese BERT built locally (no downloads): for tests and the demo pipeline.

The recipe of DESIGN.md: a character-level WordPiece vocabulary built with ``tokenizers`` from
the given texts, saved as ``tokenizer.json``, and a randomly initialised BERT (hidden 32,
2 layers) saved with ``save_pretrained``. Training it for a few steps exercises every code path
of the real pipeline in seconds.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tiny_base(texts: Iterable[str], out: str | Path, max_chars: int = 600, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Write a tiny BERT directory (config, safetensors weights, tokenizer) to ``out``."""
    import torch
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    from qingfin.data.normalize import get_normalizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    normalizer = get_normalizer("zh_basic.v1")
    counts = Counter(char for text in texts for char in normalizer(text).lower() if not char.isspace())
    vocab = SPECIALS + [char for char, _ in counts.most_common(max_chars)]
    tokenizer = Tokenizer(WordPiece({token: i for i, token in enumerate(vocab)}, unk_token="[UNK]"))
    # BertNormalizer puts spaces around CJK characters, so each becomes its own word piece.
    tokenizer.normalizer = normalizers.BertNormalizer(handle_chinese_chars=True, lowercase=True, strip_accents=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer.save(str(out / "tokenizer.json"))
    fast = PreTrainedTokenizerFast(
        tokenizer_file=str(out / "tokenizer.json"),
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
    )
    if len(fast) != len(vocab):  # transformers has silently dropped vocabularies before
        raise RuntimeError(f"tokenizer lost its vocabulary: {len(fast)} != {len(vocab)}")
    fast.save_pretrained(str(out))

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=512, pad_token_id=0,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(str(out))
    (out / "base_manifest.json").write_text(json.dumps({"kind": "tiny-random", "vocab": len(vocab), "hidden": hidden, "layers": layers, "seed": seed}, indent=2))
    return out
