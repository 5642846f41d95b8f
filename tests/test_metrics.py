import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import average_precision_score, f1_score

from qingfin.models import metrics


def test_hand_made_counts():
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    p = np.array([[0.9, 0.1], [0.4, 0.8], [0.7, 0.6], [0.2, 0.7]])
    result = metrics.precision_recall_f1(y, p, [0.5, 0.5])
    # label 0: tp=1 (row0), fp=1 (row2), fn=1 (row1); label 1: tp=2, fp=1 (row3), fn=0
    assert result["precision"].tolist() == [0.5, pytest.approx(2 / 3)]
    assert result["recall"].tolist() == [0.5, 1.0]
    assert metrics.micro_prf(y, p, [0.5, 0.5])["precision"] == pytest.approx(3 / 5)


def test_undefined_ratios_are_zero():
    result = metrics.precision_recall_f1(np.zeros((3, 1)), np.zeros((3, 1)), [0.5])
    assert result["precision"][0] == 0.0 and result["f1"][0] == 0.0


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        metrics.precision_recall_f1(np.zeros((3, 2)), np.zeros((3, 1)), [0.5])


labels_and_probs = st.integers(2, 40).flatmap(
    lambda n: st.tuples(
        arrays(np.int8, (n, 3), elements=st.integers(0, 1)),
        arrays(np.float64, (n, 3), elements=st.floats(0, 1)),
    )
)


@settings(max_examples=60, deadline=None)
@given(labels_and_probs)
def test_average_precision_matches_sklearn(data):
    y, p = data
    ours = metrics.average_precision(y, p)
    for k in range(3):
        if y[:, k].sum():
            assert ours[k] == pytest.approx(average_precision_score(y[:, k], p[:, k]))
        else:
            assert ours[k] == 0.0


@settings(max_examples=60, deadline=None)
@given(labels_and_probs, st.floats(0.01, 0.99))
def test_f1_matches_sklearn_and_bounds(data, threshold):
    y, p = data
    ours = metrics.precision_recall_f1(y, p, [threshold] * 3)
    expected = f1_score(y, (p >= threshold).astype(int), average=None, zero_division=0)
    assert np.allclose(ours["f1"], expected)
    assert ((0 <= ours["f1"]) & (ours["f1"] <= 1)).all()


@settings(max_examples=60, deadline=None)
@given(labels_and_probs)
def test_best_threshold_f1_is_at_least_any_fixed_threshold(data):
    y, p = data
    _, best = metrics.best_f1_thresholds(y, p)
    for threshold in (0.1, 0.5, 0.9):
        assert (best >= metrics.precision_recall_f1(y, p, [threshold] * 3)["f1"] - 1e-12).all()


@settings(max_examples=60, deadline=None)
@given(labels_and_probs)
def test_ece_is_bounded_and_zero_for_perfect_predictions(data):
    y, p = data
    ece = metrics.expected_calibration_error(y, p)
    assert ((ece >= 0) & (ece <= 1)).all()
    assert np.allclose(metrics.expected_calibration_error(y, y.astype(float)), 0)
