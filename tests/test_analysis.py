"""qingfin.models.analysis on hand-made rows and arrays (the notebooks' logic lives there)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qingfin.data.rows import read_rows, row_problems, write_rows
from qingfin.models import analysis
from qingfin.models.calibration import ThresholdPolicy, choose_thresholds
from qingfin.models.metrics import expected_calibration_error

ROWS = [
    {
        "id": "a",
        "text": "加薇领额度",
        "labels": ["traffic_diversion", "illegal_lending"],
        "source": "authored",
        "origin": "authored",
        "kind": "obfuscated",
    },
    {
        "id": "b",
        "text": "黑户秒批当天下款",
        "labels": ["illegal_lending"],
        "source": "cold",
        "origin": "real",
        "kind": "positive",
    },
    {
        "id": "c",
        "text": "今天天气真好",
        "labels": [],
        "source": "cold",
        "origin": "real",
        "kind": "negative",
    },
    {"id": "d", "text": "银行", "labels": [], "source": "tnews", "origin": "real"},
]
LABELS2 = ("traffic_diversion", "illegal_lending")


def test_importing_analysis_does_not_import_matplotlib():
    code = "import sys, qingfin.models.analysis; print('matplotlib' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_find_repo_root(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    assert analysis.find_repo_root(tmp_path / "notebooks") == tmp_path.resolve()
    lonely = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    lonely.mkdir()
    assert analysis.find_repo_root(lonely) == lonely.resolve()


def test_env_path_resolves_relative_paths_from_the_root(tmp_path):
    assert (
        analysis.env_path("QINGFIN_BUNDLE", "models/zhfin", tmp_path, environ={})
        == tmp_path / "models/zhfin"
    )
    assert (
        analysis.env_path("QINGFIN_BUNDLE", "x", tmp_path, environ={"QINGFIN_BUNDLE": "b/tiny"})
        == tmp_path / "b/tiny"
    )
    assert analysis.env_path(
        "QINGFIN_BUNDLE", "x", tmp_path, environ={"QINGFIN_BUNDLE": "/opt/b"}
    ) == Path("/opt/b")
    assert (
        analysis.env_path("QINGFIN_BUNDLE", "x", tmp_path, environ={"QINGFIN_BUNDLE": ""})
        == tmp_path / "x"
    )  # empty = unset


def test_read_splits_skips_missing_files(tmp_path):
    write_rows(ROWS[:2], tmp_path / "dev.jsonl")
    assert {split: len(rows) for split, rows in analysis.read_splits(tmp_path).items()} == {
        "dev": 2
    }


def test_markdown_tables():
    assert analysis.markdown_table(["a", "b"], [["x|y\nz", 0.5], [None, 3]]).splitlines() == [
        "| a | b |",
        "|---|---|",
        "| x\\|y z | 0.500 |",
        "| – | 3 |",
    ]
    assert analysis.markdown_table(["l"], [[["a", "b"]], [[]]]).splitlines()[2:] == [
        "| a, b |",
        "| – |",
    ]
    assert analysis.records_table([]) == "_(no rows)_"
    assert analysis.records_table([{"a": 1, "b": 2}], columns=["b"]).splitlines()[-1] == "| 2 |"


def test_shorten_and_row_records():
    assert analysis.shorten("一二三", 3) == "一二三" and analysis.shorten("一二三", 1) == "一…"
    records = analysis.row_records(ROWS[:1] + ROWS[3:], ["id", "kind", "text"], max_chars=3)
    assert records == [
        {"id": "a", "kind": "obfuscated", "text": "加薇领…"},
        {"id": "d", "kind": None, "text": "银行"},
    ]


def test_count_records_counts_each_label_and_clean_rows():
    records = analysis.count_records({"train": ROWS, "dev": ROWS[2:3]}, labels=LABELS2)
    assert records[0] == {
        "label": "traffic_diversion",
        "split": "train",
        "origin": "authored",
        "kind": "obfuscated",
        "rows": 1,
    }
    lending = [r for r in records if r["label"] == "illegal_lending"]
    assert [(r["origin"], r["rows"]) for r in lending] == [("authored", 1), ("real", 1)]
    clean = [(r["split"], r["kind"], r["rows"]) for r in records if r["label"] == analysis.CLEAN]
    assert clean == [
        ("train", "?", 1),
        ("train", "negative", 1),
        ("dev", "negative", 1),
    ]  # missing kind reads "?"
    assert sum(r["rows"] for r in records) == 2 + 1 + 2 + 1  # row "a" counts once per label


def test_pivot_and_pivot_markdown():
    records = analysis.count_records({"train": ROWS, "dev": ROWS[2:3]}, fields=(), labels=LABELS2)
    keys, columns, table = analysis.pivot(records, ["label"], "split")
    assert keys == [("traffic_diversion",), ("illegal_lending",), (analysis.CLEAN,)]
    assert columns == ["train", "dev"] and table.tolist() == [[1, 0], [2, 0], [2, 1]]
    lines = analysis.pivot_markdown(records, ["label"], "split").splitlines()
    assert lines[0] == "| label | train | dev | total |"
    assert lines[-1] == "| **total** | 5 | 1 | 6 |"


def test_text_lengths_and_summary():
    lengths = analysis.text_lengths(ROWS, labels=LABELS2)
    assert lengths["illegal_lending"].tolist() == [5, 8] and lengths[analysis.CLEAN].tolist() == [
        6,
        2,
    ]
    summary = analysis.length_summary(
        {**lengths, "empty": np.array([], dtype=int)}, quantiles=(0.5,)
    )
    assert summary[1] == {"label": "illegal_lending", "rows": 2, "mean": 6.5, "p50": 6.5, "max": 8}
    assert summary[-1] == {"label": "empty", "rows": 0, "mean": None, "p50": None, "max": None}


def test_cooccurrence_counts_and_conditionals():
    y = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 0]])
    counts = analysis.cooccurrence(y)
    assert counts.tolist() == [[3, 2, 0], [2, 2, 0], [0, 0, 0]]
    assert (counts == counts.T).all()
    conditional = analysis.conditional_cooccurrence(counts)
    assert conditional[0].tolist() == pytest.approx([1.0, 2 / 3, 0.0])
    assert conditional[1, 0] == 1.0 and conditional[2].tolist() == [
        0.0,
        0.0,
        0.0,
    ]  # unseen label: zeros, no NaN
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        analysis.cooccurrence(np.array([1, 0]))


def test_examples_per_label_is_stable_and_bounded():
    rows = [
        {"id": f"r{i}", "text": "x", "labels": ["defamation"] if i % 2 else []} for i in range(20)
    ]
    first = analysis.examples_per_label(rows, per_label=3, seed=1)
    assert first == analysis.examples_per_label(
        list(reversed(rows)), per_label=3, seed=1
    )  # order-independent
    assert (
        len(first["defamation"]) == 3
        and len(first[analysis.CLEAN]) == 3
        and first["impersonation"] == []
    )
    assert all("defamation" in row["labels"] for row in first["defamation"])
    picks = {
        tuple(r["id"] for r in analysis.examples_per_label(rows, per_label=3, seed=s)["defamation"])
        for s in range(5)
    }
    assert len(picks) > 1  # the seed changes the pick


def test_licence_summary_flags_restrictive_licences():
    licences = {
        "cold": "Apache-2.0: thu-coai/COLDataset",
        "tnews": "unknown licence, research use only",
        "harm": "CC BY-NC 4.0",
    }
    rows = [*ROWS, {"id": "e", "text": "t", "labels": [], "source": "harm", "origin": "real"}]
    summary = {r["source"]: r for r in analysis.licence_summary(rows, licences)}
    assert summary["cold"] == {
        "source": "cold",
        "rows": 2,
        "origin": "real",
        "licence": licences["cold"],
        "restricted": False,
    }
    assert summary["tnews"]["restricted"] and summary["harm"]["restricted"]
    assert (
        not summary["authored"]["restricted"] and "this project" in summary["authored"]["licence"]
    )


Y = np.array([[1, 0], [1, 1], [0, 1], [0, 0], [0, 0]])
P = np.array([[0.9, 0.1], [0.3, 0.8], [0.7, 0.2], [0.6, 0.7], [0.1, 0.05]])


def test_confusion_records():
    first, second = analysis.confusion_records(Y, P, [0.5, 0.5], LABELS2)
    assert first == {
        "label": "traffic_diversion",
        "threshold": 0.5,
        "tp": 1,
        "fp": 2,
        "fn": 1,
        "tn": 1,
        "precision": pytest.approx(1 / 3),
        "recall": 0.5,
        "f1": pytest.approx(0.4),
    }
    assert (second["tp"], second["fp"], second["fn"], second["tn"]) == (1, 1, 1, 2)


def test_cross_label_counts():
    counts = analysis.cross_label_counts(Y, P, [0.5, 0.5])
    # true traffic_diversion rows 0, 1: flagged td (row 0) and il (row 1); true il rows 1, 2: il (row 1), td (row 2)
    assert counts.tolist() == [
        [1, 1],
        [1, 1],
        [1, 1],
    ]  # last row: clean rows 3 and 4 (row 3 flagged for both)
    assert np.diag(counts[:2]).tolist() == [
        c["tp"] for c in analysis.confusion_records(Y, P, [0.5, 0.5], LABELS2)
    ]


def test_ranked_errors_orders_most_confident_mistakes_first():
    assert analysis.ranked_errors(Y[:, 0], P[:, 0], 0.5, "fp").tolist() == [2, 3]
    assert analysis.ranked_errors(Y[:, 0], P[:, 0], 0.5, "fp", limit=1).tolist() == [2]
    assert analysis.ranked_errors(Y[:, 0], P[:, 0], 0.5, "fn").tolist() == [1]
    assert analysis.ranked_errors(Y[:, 1], P[:, 1], 0.0, "fn").size == 0
    with pytest.raises(ValueError, match="'fp' or 'fn'"):
        analysis.ranked_errors(Y[:, 0], P[:, 0], 0.5, "tp")


def test_error_selections_and_relabel_rows_round_trip(tmp_path):
    selections = analysis.error_selections(Y, P, [0.5, 0.5], LABELS2)
    assert selections == {
        1: ["fn:traffic_diversion"],
        2: ["fp:traffic_diversion", "fn:illegal_lending"],
        3: ["fp:traffic_diversion", "fp:illegal_lending"],
    }
    rows = [{"id": f"r{i}", "text": "文本", "labels": [], "source": "authored"} for i in range(5)]
    exported = analysis.relabel_rows(rows, selections, P, LABELS2)
    assert [r["id"] for r in exported] == ["r1", "r2", "r3"]
    assert exported[1]["relabel"] == {
        "reasons": ["fp:traffic_diversion", "fn:illegal_lending"],
        "scores": {"traffic_diversion": 0.7, "illegal_lending": 0.2},
    }
    assert "relabel" not in rows[1]  # copies, the input rows are untouched
    assert all(row_problems(r, "x", 1) == [] for r in exported)
    write_rows(exported, tmp_path / "relabel.jsonl")
    assert read_rows(tmp_path / "relabel.jsonl") == exported


def test_selections_by_id_and_merge():
    picked = analysis.selections_by_id(ROWS, ["c", "a"])
    assert picked == {2: ["manual"], 0: ["manual"]}
    with pytest.raises(KeyError, match="zz"):
        analysis.selections_by_id(ROWS, ["a", "zz"])
    merged = analysis.merge_selections({2: ["fp:x"]}, picked)
    assert merged == {0: ["manual"], 2: ["fp:x", "manual"]} and list(merged) == [0, 2]
    assert analysis.merge_selections() == {}


def test_evidence_and_error_records():
    evidence = [
        {"kind": "lexicon", "text": "加薇", "label_hint": "traffic_diversion"},
        {"kind": "contact", "text": "abc123", "label_hint": "traffic_diversion"},
    ]
    assert (
        analysis.evidence_summary(evidence)
        == "lexicon:加薇→traffic_diversion; contact:abc123→traffic_diversion"
    )
    assert analysis.evidence_summary([]) == "–"
    rows = [{**ROWS[0], "text": "长" * 100}, ROWS[2]]
    records = analysis.error_records(
        rows, [1, 0], np.array([0.2, 0.9]), [[], evidence], max_chars=10
    )
    assert records[0] == {
        "id": "c",
        "score": 0.9,
        "labels": analysis.CLEAN,
        "kind": "negative",
        "text": "今天天气真好",
        "evidence": "–",
    }
    assert (
        records[1]["text"] == "长" * 10 + "…"
        and records[1]["labels"] == "traffic_diversion,illegal_lending"
    )
    with pytest.raises(ValueError):
        analysis.error_records(rows, [0, 1], np.array([0.2, 0.9]), [[]])


def test_slice_records():
    summary = {
        "kind": {"positive": {"rows": 2, "flag_rate": 0.5}},
        "platform": {"weibo": {"rows": 1, "flag_rate": 0.0}},
    }
    assert analysis.slice_records(summary, ["platform", "attack"]) == [
        {"field": "platform", "value": "weibo", "rows": 1, "flag_rate": 0.0}
    ]
    assert [r["field"] for r in analysis.slice_records(summary)] == ["kind", "platform"]


def test_batched_logits_keeps_input_order_and_batch_size():
    seen = []

    def fake_logits(texts):
        seen.append(len(texts))
        return np.array([[len(t), -len(t)] for t in texts], dtype=np.float32).reshape(-1, 2)

    texts = ["aaaa", "a", "aaa", "aaaaa", "aa"]
    out = analysis.batched_logits(fake_logits, texts, batch_size=2)
    assert out[:, 0].tolist() == [4, 1, 3, 5, 2] and out.dtype == np.float32
    assert seen == [2, 2, 1]
    assert analysis.batched_logits(fake_logits, [], batch_size=2).shape == (0, 2)


def test_score_rows_applies_the_bundle_temperatures():
    from types import SimpleNamespace

    fake = SimpleNamespace(
        labels=LABELS2,
        logits=lambda texts: np.array([[2.0, -1.0]] * len(texts), dtype=np.float32).reshape(-1, 2),
        bundle=SimpleNamespace(
            calibration={
                "method": "temperature",
                "per_label": {
                    "traffic_diversion": {"temperature": 2.0},
                    "illegal_lending": {"temperature": 1.0},
                },
            }
        ),
    )
    scored = analysis.score_rows(fake, ROWS[:2], batch_size=1)
    assert scored["y_true"].tolist() == [[1, 1], [0, 1]] and scored["temperatures"].tolist() == [
        2.0,
        1.0,
    ]
    assert scored["uncalibrated"][0].tolist() == pytest.approx(
        [1 / (1 + np.exp(-2)), 1 / (1 + np.exp(1))]
    )
    assert scored["calibrated"][0].tolist() == pytest.approx(
        [1 / (1 + np.exp(-1)), 1 / (1 + np.exp(1))]
    )


def test_threshold_curves_per_label():
    curves = analysis.threshold_curves(
        np.array([[1, 0], [0, 0], [1, 0]]), np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]]), LABELS2
    )
    assert curves["traffic_diversion"]["precision"].tolist() == pytest.approx([1.0, 0.5, 2 / 3])
    assert curves["traffic_diversion"]["flag_rate"].tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert curves["illegal_lending"]["thresholds"].size == 0  # no positives


def test_reliability_bins_agree_with_ece():
    rng = np.random.default_rng(0)
    probs = rng.random(500)
    actual = (rng.random(500) < probs**2).astype(float)
    probs[:3] = [0.0, 1.0, 0.5]  # bin edges go where expected_calibration_error puts them
    data = analysis.reliability_bins(actual, probs, bins=10)
    assert data["count"].sum() == 500 and data["edges"].tolist() == pytest.approx(
        np.linspace(0, 1, 11).tolist()
    )
    seen = data["count"] > 0
    ece = np.sum(
        data["count"][seen] / 500 * np.abs(data["mean_prob"][seen] - data["positive_rate"][seen])
    )
    assert ece == pytest.approx(expected_calibration_error(actual[:, None], probs[:, None])[0])
    empty = analysis.reliability_bins(np.array([1.0]), np.array([0.95]), bins=4)
    assert empty["count"].tolist() == [0, 0, 0, 1] and np.isnan(empty["positive_rate"][0])


def test_prevalence_weights():
    y = np.array([[1, 0], [0, 1], [0, 0], [0, 0], [0, 0]])
    weights = analysis.prevalence_weights(y, 0.01)
    assert weights[:2].sum() / weights.sum() == pytest.approx(0.01)
    assert weights.sum() == pytest.approx(5.0)  # the weighted total is still N rows
    assert analysis.prevalence_weights(y, None).tolist() == [1.0] * 5
    with pytest.raises(ValueError, match="cannot reach"):
        analysis.prevalence_weights(np.zeros((3, 2)), 0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        analysis.prevalence_weights(y, 1.5)


def test_post_decisions_and_workload():
    probs = np.array([[0.9, 0.6], [0.55, 0.1], [0.2, 0.1], [0.6, 0.95]])
    review, block = [0.5, 0.5], [0.8, 0.9]
    assert analysis.post_decisions(probs, review, block).tolist() == [2, 1, 0, 2]
    result = analysis.workload(probs, review, block, per=100)
    assert (result["review"], result["block"]) == (25.0, 50.0)
    assert result["label_review"].tolist() == [75.0, 50.0] and result["label_block"].tolist() == [
        25.0,
        25.0,
    ]
    weighted = analysis.workload(
        probs, review, block, weights=np.array([0.0, 3.0, 1.0, 0.0]), per=100
    )
    assert (weighted["review"], weighted["block"]) == (75.0, 0.0)
    with pytest.raises(ValueError, match="positive weight"):
        analysis.workload(probs, review, block, weights=np.zeros(4))


def test_workload_sweep_moves_one_label_only():
    probs = np.array([[0.9, 0.6], [0.55, 0.1], [0.2, 0.7], [0.3, 0.2]])
    grid = [0.0, 0.5, 0.8, 1.0]
    sweep = analysis.workload_sweep(probs, [0.5, 0.5], [1.0, 1.0], 1, grid, "review", per=4)
    # Label 0 alone sends rows 0 and 1 to review; label 1 adds rows 2 (and 3 at threshold 0).
    assert sweep["review"].tolist() == [4.0, 3.0, 2.0, 2.0] and sweep["block"].tolist() == [0.0] * 4
    blocked = analysis.workload_sweep(probs, [0.5, 0.5], [1.0, 1.0], 0, grid, "block", per=4)
    assert blocked["block"].tolist() == [4.0, 2.0, 1.0, 0.0]
    assert (np.diff(blocked["block"]) <= 0).all()
    with pytest.raises(ValueError, match="level"):
        analysis.workload_sweep(probs, [0.5, 0.5], [1.0, 1.0], 0, grid, "pass")


def test_workload_table_compares_threshold_sets():
    probs = np.array([[0.9, 0.6], [0.55, 0.1], [0.2, 0.1], [0.6, 0.95]])
    sets = {
        "current": {"a": {"review": 0.5, "block": 0.8}, "b": {"review": 0.5, "block": 0.9}},
        "stricter": {"a": {"review": 0.7, "block": 1.0}, "b": {"review": 0.7, "block": 1.0}},
    }
    current, stricter = analysis.workload_table(probs, sets, ["a", "b"], per=100)
    assert current == {
        "thresholds": "current",
        "review queue": 25.0,
        "auto-blocked": 50.0,
        "a ≥ review": 75.0,
        "b ≥ review": 50.0,
    }
    assert (stricter["review queue"], stricter["auto-blocked"]) == (50.0, 0.0)


def test_policy_from_document():
    document = {"policy": {"review_min_precision": 0.8, "block_precision": 0.95}}
    assert analysis.policy_from_document(document) == ThresholdPolicy(0.8, 0.95)
    assert analysis.policy_from_document(
        document, {"review_min_precision": None}
    ) == ThresholdPolicy(None, 0.95)
    assert analysis.policy_from_document({"policy": None}) == ThresholdPolicy()
    with pytest.raises(ValueError, match="unknown threshold policy"):
        analysis.policy_from_document(document, {"block": 0.9})


def _chosen():
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0], [1, 0], [0, 1]])
    p = np.array([[0.9, 0.1], [0.8, 0.7], [0.3, 0.9], [0.2, 0.4], [0.6, 0.2], [0.1, 0.6]])
    return choose_thresholds(y, p, LABELS2, ThresholdPolicy(block_precision=0.9))


def test_apply_overrides_records_manual_changes():
    chosen = _chosen()
    changed = analysis.apply_overrides(chosen, {"illegal_lending": {"review": 0.5}})
    assert (
        changed["illegal_lending"]["review"] == 0.5
        and changed["illegal_lending"]["review_method"] == "manual"
    )
    assert changed["illegal_lending"]["notes"][-1].startswith("review set by hand")
    assert changed["traffic_diversion"] == chosen["traffic_diversion"]
    assert chosen["illegal_lending"]["review_method"] == "best_f1"  # input untouched
    for bad, message in [
        ({"nope": {"review": 0.5}}, "unknown label"),
        ({"illegal_lending": {"warn": 0.5}}, "'review' or 'block'"),
        ({"illegal_lending": {"review": 1.5}}, r"\[0, 1\]"),
        ({"illegal_lending": {"block": 0.0}}, "review <= block"),
    ]:
        with pytest.raises(ValueError, match=message):
            analysis.apply_overrides(chosen, bad)


def test_thresholds_document_has_the_bundle_format():
    policy = ThresholdPolicy(review_min_precision=None, block_precision=0.9)
    document = analysis.thresholds_document(
        _chosen(), LABELS2, policy, "ab" * 32, derived_from={"bundle": "x"}
    )
    assert set(document) == {"policy", "calibration_data_sha256", "labels", "derived_from"}
    assert document["policy"] == {"review_min_precision": None, "block_precision": 0.9}
    assert list(document["labels"]) == list(LABELS2)
    for values in document["labels"].values():
        assert set(values) == {"review", "block", "review_method", "block_method", "notes"}
    json.dumps(document)  # plain JSON, no numpy scalars
    with pytest.raises(ValueError, match="no thresholds"):
        analysis.thresholds_document(_chosen(), [*LABELS2, "defamation"], policy, None)
    changes = analysis.threshold_changes(
        document["labels"],
        analysis.apply_overrides(document["labels"], {"illegal_lending": {"block": 1.0}}),
        LABELS2,
    )
    assert (
        changes[1]["block (candidate)"] == 1.0
        and changes[0]["review"] == changes[0]["review (candidate)"]
    )


@pytest.fixture
def pyplot():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def _visible_axes(figure) -> int:
    return sum(ax.get_visible() for ax in figure.axes if ax.get_label() != "<colorbar>")


def test_plots_draw_one_panel_per_label(pyplot):
    thresholds = {label: {"review": 0.5, "block": 0.8} for label in LABELS2}
    figures = [
        analysis.plot_length_histograms(analysis.text_lengths(ROWS, LABELS2)),
        analysis.plot_threshold_curves(analysis.threshold_curves(Y, P, LABELS2), thresholds),
        analysis.plot_reliability(Y, {"uncalibrated": P, "calibrated": P**2}, LABELS2, bins=5),
        analysis.plot_workload(P, [0.5, 0.5], [0.8, 0.8], LABELS2, grid=[0.0, 0.5, 1.0]),
    ]
    assert [_visible_axes(f) for f in figures] == [3, 2, 2, 2]
    heatmap = analysis.plot_heatmap(analysis.cooccurrence(Y), LABELS2, title="co-occurrence")
    assert heatmap.axes[0].get_title() == "co-occurrence" and len(heatmap.axes[0].texts) == 4
