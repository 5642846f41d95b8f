"""Baselines scored on the same splits, with the same threshold method, as the shipped model.

- ``keyword``: a lexicon per label (the finance-slang lexicon's terms by label hint) matched as
  substrings of NFKC-normalized text (``zh_basic.v1``) — what platforms run today;
- ``tfidf_lr``: TF-IDF of jieba words + character 1–3-grams, one-vs-rest logistic regression;
- ``embedding_lr``: logistic regression on frozen mean-pooled base-model embeddings.
Each returns probabilities ``[N, K]`` for calib and test; thresholds are chosen on calib with
the run's :class:`ThresholdPolicy` and metrics computed on test by :mod:`qingfin.models.metrics`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qingfin.data.normalize import get_normalizer
from qingfin.data.schema import LABELS, labels_matrix
from qingfin.models import metrics
from qingfin.models.calibration import ThresholdPolicy, choose_thresholds

logger = logging.getLogger(__name__)


def keyword_probs(texts: Sequence[str]) -> np.ndarray:
    """1.0 where any lexicon term of a label occurs in the NFKC-normalized text, else 0.0."""
    from qingfin.data.lexicon import load_lexicon

    normalizer = get_normalizer("zh_basic.v1")
    terms = {label: [e.term.lower() for e in load_lexicon() if e.label_hint == label] for label in LABELS}
    out = np.zeros((len(texts), len(LABELS)), dtype=np.float32)
    for i, text in enumerate(texts):
        normalized = normalizer(text).lower()
        for k, label in enumerate(LABELS):
            out[i, k] = float(any(term in normalized for term in terms[label]))
    return out


def _jieba_words(text: str) -> list[str]:
    import jieba

    return [w for w in jieba.lcut(text) if w.strip()]


def tfidf_lr_probs(train_texts: Sequence[str], y_train: np.ndarray, eval_texts: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """Fit TF-IDF (jieba words + char 1–3-grams) + one-vs-rest LR; probabilities per eval set."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import FeatureUnion, make_pipeline

    features = FeatureUnion([
        ("words", TfidfVectorizer(tokenizer=_jieba_words, token_pattern=None, lowercase=True, min_df=2, sublinear_tf=True)),
        ("chars", TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True, max_features=200_000)),
    ])
    model = make_pipeline(features, OneVsRestClassifier(LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced")))
    model.fit(list(train_texts), y_train)
    return [model.predict_proba(list(texts)).astype(np.float32) for texts in eval_texts]


def embeddings(base_dir: str | Path, texts: Sequence[str], max_length: int = 128, batch_size: int = 64) -> np.ndarray:
    """Mean-pooled, L2-normalised frozen encoder embeddings ``[N, H]``."""
    import torch
    from transformers import AutoModel

    from qingfin.models.modeling import mean_pool
    from qingfin.training.tokenizer_loading import load_tokenizer

    tokenizer = load_tokenizer(base_dir)
    encoder = AutoModel.from_pretrained(str(base_dir), add_pooling_layer=False).eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            batch = tokenizer([texts[i] for i in index], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            pooled = torch.nn.functional.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1)
            out[index] = pooled.numpy()
    return out


def embedding_lr_probs(train_x: np.ndarray, y_train: np.ndarray, eval_x: Sequence[np.ndarray]) -> list[np.ndarray]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    model = OneVsRestClassifier(LogisticRegression(C=10.0, max_iter=3000, class_weight="balanced")).fit(train_x, y_train)
    return [model.predict_proba(x).astype(np.float32) for x in eval_x]


def score_system(calib_probs: np.ndarray, y_calib: np.ndarray, test_probs: np.ndarray, y_test: np.ndarray,
                 test_rows: list[dict], policy: ThresholdPolicy, fixed_threshold: float | None = None) -> dict:
    """Thresholds from calib (same method as the shipped model), metrics on test.

    ``fixed_threshold`` is for 0/1 scorers (the keyword filter): they have nothing to tune, and
    "best F1" on two score values can degenerate into flagging every row.
    """
    if fixed_threshold is None:
        chosen = choose_thresholds(y_calib, calib_probs, LABELS, policy)
    else:
        chosen = {label: {"review": fixed_threshold, "block": fixed_threshold} for label in LABELS}
    result = {"thresholds": {label: {k: chosen[label][k] for k in ("review", "block")} for label in LABELS}}
    for level in ("review", "block"):
        result[level] = metrics.report(y_test, test_probs, [chosen[label][level] for label in LABELS], LABELS)
    review = np.array([chosen[label]["review"] for label in LABELS])
    result["kinds"] = kind_rates(test_rows, test_probs, review)
    result["review_flags"] = test_probs >= review[None, :]  # for paired comparisons with other systems
    return result


def kind_rates(rows: list[dict], probs: np.ndarray, review: np.ndarray) -> dict:
    """Flag rate of hard negatives and recall-any of obfuscated positives (the issue's targets)."""
    flagged = (probs >= review[None, :]).any(1)
    kinds = np.array([row.get("kind", "") for row in rows])
    positive = np.array([bool(row["labels"]) for row in rows])
    hard = kinds == "hard_negative"
    obfuscated = (kinds == "obfuscated") & positive
    return {
        "hard_negative_flag_rate": float(flagged[hard].mean()) if hard.any() else None,
        "hard_negatives": int(hard.sum()),
        "obfuscated_recall": float(flagged[obfuscated].mean()) if obfuscated.any() else None,
        "obfuscated_positives": int(obfuscated.sum()),
    }


def run_baselines(train_rows: list[dict], calib_rows: list[dict], test_rows: list[dict], policy: ThresholdPolicy,
                  normalizer_name: str = "zh_fin.v1", base_dir: str | Path | None = None) -> dict:
    """All baselines, each scored like the shipped model. ``base_dir`` enables ``embedding_lr``."""
    normalizer = get_normalizer(normalizer_name)
    texts = {name: [normalizer(r["text"]) for r in rows] for name, rows in (("train", train_rows), ("calib", calib_rows), ("test", test_rows))}
    y = {name: labels_matrix([r["labels"] for r in rows]) for name, rows in (("train", train_rows), ("calib", calib_rows), ("test", test_rows))}
    results = {}
    raw_calib, raw_test = [r["text"] for r in calib_rows], [r["text"] for r in test_rows]
    results["keyword"] = score_system(keyword_probs(raw_calib), y["calib"], keyword_probs(raw_test), y["test"], test_rows, policy,
                                      fixed_threshold=0.5)  # flagged = a lexicon term matched
    logger.info("baseline keyword done")
    calib_p, test_p = tfidf_lr_probs(texts["train"], y["train"], [texts["calib"], texts["test"]])
    results["tfidf_lr"] = score_system(calib_p, y["calib"], test_p, y["test"], test_rows, policy)
    logger.info("baseline tfidf_lr done")
    if base_dir is not None:
        train_x, calib_x, test_x = (embeddings(base_dir, texts[name]) for name in ("train", "calib", "test"))
        calib_p, test_p = embedding_lr_probs(train_x, y["train"], [calib_x, test_x])
        results["embedding_lr"] = score_system(calib_p, y["calib"], test_p, y["test"], test_rows, policy)
        logger.info("baseline embedding_lr done")
    return results
