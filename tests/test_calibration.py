import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from qingfin.models.calibration import (
    NEVER,
    ThresholdPolicy,
    choose_thresholds,
    fit_temperature,
    threshold_for_precision,
    wilson_lower_bound,
)
from qingfin.models.metrics import precision_recall_f1
from qingfin.serve.scoring import calibrated_probs, decide, most_severe


def test_temperature_recovers_overconfidence():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 5000)
    y = (rng.random(5000) < 1 / (1 + np.exp(-true_logits))).astype(float)
    # The model is 3x overconfident: its logits are 3x the true ones.
    assert fit_temperature(3 * true_logits, y) == pytest.approx(3.0, rel=0.1)


@settings(max_examples=40, deadline=None)
@given(st.floats(0.2, 5.0), st.integers(0, 1000))
def test_temperature_preserves_ranking(temperature, seed):
    logits = np.random.default_rng(seed).normal(size=(20, 2))
    probs = calibrated_probs(logits, np.array([temperature, 1.0]))
    assert (np.argsort(probs[:, 0], kind="stable") == np.argsort(logits[:, 0], kind="stable")).all()


def test_threshold_for_precision_and_unreachable():
    actual = np.array([1, 1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    assert threshold_for_precision(actual, scores, 0.75) == 0.6  # 3 of 4 flagged are right
    assert threshold_for_precision(actual, scores, 1.0) == 0.8
    assert threshold_for_precision(np.array([0, 1]), np.array([0.9, 0.1]), 0.9) is None


def test_threshold_for_precision_does_not_buy_false_positives_without_recall():
    # A perfect ranker: every positive above every negative. Precision stays >= 0.85 down to
    # the 10th negative (60 of 70), but those negatives add no recall; the threshold stops at the last
    # positive and flags none of them.
    actual = np.r_[np.ones(60), np.zeros(40)]
    scores = np.linspace(1.0, 0.01, 100)
    threshold = threshold_for_precision(actual, scores, 0.85)
    assert threshold == pytest.approx(scores[59])
    flagged = scores >= threshold
    assert flagged.sum() == 60 and actual[flagged].all()
    # The same holds with a confidence bound: recall 1.0 is reachable, so nothing lower is taken.
    assert threshold_for_precision(actual, scores, 0.85, confidence=0.9) == pytest.approx(scores[59])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.5, 0.99))
def test_chosen_block_threshold_meets_its_precision_or_is_disabled(seed, target):
    rng = np.random.default_rng(seed)
    y = (rng.random((60, 2)) < 0.3).astype(float)
    probs = np.clip(y * 0.4 + rng.random((60, 2)) * 0.6, 0, 1)
    chosen = choose_thresholds(y, probs, ["a", "b"], ThresholdPolicy(block_precision=target))
    for k, label in enumerate(["a", "b"]):
        block = chosen[label]["block"]
        assert block >= chosen[label]["review"]
        if block < NEVER and not chosen[label]["notes"]:
            precision = precision_recall_f1(y[:, k : k + 1], probs[:, k : k + 1], [block])["precision"][0]
            assert precision >= target - 1e-9


def test_unreachable_targets_are_recorded():
    y = np.array([[0], [1], [0], [1]], dtype=float)
    probs = np.array([[0.9], [0.8], [0.7], [0.1]])
    chosen = choose_thresholds(y, probs, ["a"], ThresholdPolicy(review_min_precision=0.99, block_precision=0.99))
    assert chosen["a"]["block"] == NEVER
    assert any("unreachable" in note for note in chosen["a"]["notes"])
    assert chosen["a"]["review_method"] == "best_f1"


def test_decisions():
    assert decide(0.2, 0.5, 0.9) == "pass"
    assert decide(0.5, 0.5, 0.9) == "review"
    assert decide(0.95, 0.5, 0.9) == "block"
    assert most_severe(["pass", "block", "review"]) == "block"
    assert most_severe([]) == "pass"


def test_platt_recovers_a_shifted_and_underconfident_model():
    from qingfin.models.calibration import fit_platt

    rng = np.random.default_rng(1)
    true_logits = rng.normal(-1.0, 2.5, 20_000)
    y = (rng.random(20_000) < 1 / (1 + np.exp(-true_logits))).astype(float)
    # The model's logits are a third of the true ones and shifted: true = 3 * (model - 2).
    model_logits = true_logits / 3 + 2
    temperature, bias = fit_platt(model_logits, y)
    assert temperature == pytest.approx(1 / 3, rel=0.05)
    assert bias == pytest.approx(-6.0, abs=0.3)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.2, 4.0), st.floats(-3.0, 3.0))
@example(164, 0.25, -2.0)  # found by CI: the optimum scale 0.022 lies below the allowed 1/T >= e^-3
def test_platt_matches_scikit_learn_and_never_loses_to_temperature(seed, scale, shift):
    from sklearn.linear_model import LogisticRegression

    from qingfin.models.calibration import _LOG_T_RANGE, _bce, fit_platt

    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, 400)
    y = (rng.random(400) < 1 / (1 + np.exp(-(scale * z + shift)))).astype(float)
    if not 0 < y.sum() < len(y):
        return
    temperature, bias = fit_platt(z, y)
    reference = LogisticRegression(C=1e8, tol=1e-10, max_iter=10_000).fit(z[:, None], y)
    platt_loss = _bce(z, y, 1 / temperature, bias)
    assert platt_loss <= _bce(z, y, 1 / fit_temperature(z, y)) + 1e-9  # a superset of temperature
    low, high = np.exp(-_LOG_T_RANGE[1]), np.exp(-_LOG_T_RANGE[0])  # the allowed scales 1/T
    if low <= reference.coef_[0, 0] <= high:
        assert platt_loss <= _bce(z, y, reference.coef_[0, 0], reference.intercept_[0]) + 1e-6
    else:  # the unconstrained optimum needs a T outside the range: Platt stops at the bound
        bound = low if reference.coef_[0, 0] < low else high
        assert 1 / temperature == pytest.approx(bound)


def test_platt_stays_finite_and_increasing_on_separable_data():
    from qingfin.models.calibration import fit_platt

    z = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    temperature, bias = fit_platt(z, (z > 0).astype(float))
    assert 0 < temperature < np.inf and np.isfinite(bias)
    probs = calibrated_probs(z[:, None], np.array([temperature]), np.array([bias]))[:, 0]
    assert (np.diff(probs) >= 0).all() and probs[0] < 0.5 < probs[-1]


def test_calibration_documents_round_trip_both_methods():
    from qingfin.models.calibration import fit_calibration
    from qingfin.serve.scoring import calibration_from_document

    rng = np.random.default_rng(2)
    logits = rng.normal(size=(300, 2))
    y = (rng.random((300, 2)) < 0.3).astype(float)
    for method in ("platt", "temperature"):
        temperatures, biases = fit_calibration(logits, y, method)
        document = {"method": method, "per_label": {
            label: {"temperature": t, **({"bias": b} if method == "platt" else {})}
            for label, t, b in zip("ab", temperatures, biases)}}
        got_t, got_b = calibration_from_document(document, ["a", "b"])
        assert np.allclose(got_t, temperatures) and np.allclose(got_b, biases)
        if method == "temperature":
            assert (got_b == 0).all()
    assert [v.tolist() for v in calibration_from_document({"method": "none"}, ["a"])] == [[1.0], [0.0]]
    with pytest.raises(ValueError, match="method"):
        fit_calibration(logits, y, "isotonic")


def test_wilson_lower_bound_values():
    # Known value: 90 of 100 right, 95 % one-sided -> 0.8396; 0.5 confidence gives p back.
    assert float(wilson_lower_bound(np.array(0.9), np.array(100), 0.95)) == pytest.approx(0.8396, abs=1e-4)
    assert float(wilson_lower_bound(np.array(0.9), np.array(100), 0.5)) == pytest.approx(0.9)
    # Fewer rows, same precision -> a lower bound; perfect precision on 5 rows is far from certain.
    assert wilson_lower_bound(np.array(0.9), np.array(20), 0.9) < wilson_lower_bound(np.array(0.9), np.array(200), 0.9)
    assert float(wilson_lower_bound(np.array(1.0), np.array(5), 0.9)) < 0.8
    with pytest.raises(ValueError, match="confidence"):
        wilson_lower_bound(np.array(0.9), np.array(10), 1.0)
    with pytest.raises(ValueError, match="precision_confidence"):
        ThresholdPolicy(precision_confidence=0.3)


def test_confidence_rejects_a_lucky_low_threshold():
    # Precision touches 0.8 again at a low threshold only because of two lucky positives.
    actual = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 1, 1])
    scores = np.linspace(0.95, 0.3, actual.size)
    measured = threshold_for_precision(actual, scores, 0.75)
    bounded = threshold_for_precision(actual, scores, 0.75, confidence=0.8)
    assert measured == pytest.approx(scores[-1])
    assert bounded is not None and bounded > measured
    assert threshold_for_precision(actual, scores, 0.75, confidence=0.5) == measured


def _true_precision(threshold: float, prevalence: float, shift: float) -> float:
    from statistics import NormalDist

    tail = NormalDist().cdf
    tp = prevalence * (1 - tail(threshold - shift))
    fp = (1 - prevalence) * (1 - tail(threshold))
    return tp / (tp + fp)


def test_confidence_keeps_the_precision_promise_on_unseen_data():
    """What the option is for: on calib sets the size of ours (~80 positives per label), the
    threshold that just *touches* 85 % precision misses 85 % on the population about 40 % of the
    time; a 90 % confidence bound misses it rarely. Positives ~ N(3, 1), negatives ~ N(0, 1)."""
    target, prevalence, shift, trials = 0.85, 0.1, 3.0, 200
    missed = {None: 0, 0.9: 0}
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        actual = rng.random(800) < prevalence
        scores = rng.normal(0, 1, 800) + shift * actual
        for confidence in missed:
            threshold = threshold_for_precision(actual, scores, target, confidence)
            assert threshold is not None
            missed[confidence] += _true_precision(threshold, prevalence, shift) < target
    assert missed[None] / trials > 0.3  # measured: 82 of 200
    assert missed[0.9] / trials < 0.15  # measured: 17 of 200, about the 10 % a 0.9 bound allows


def test_policy_with_confidence_is_recorded():
    rng = np.random.default_rng(3)
    y = (rng.random((400, 1)) < 0.2).astype(float)
    probs = np.clip(y * 0.5 + rng.random((400, 1)) * 0.5, 0, 1)
    policy = ThresholdPolicy(review_min_precision=0.85, block_precision=0.97, precision_confidence=0.9)
    chosen = choose_thresholds(y, probs, ["a"], policy)
    plain = choose_thresholds(y, probs, ["a"], ThresholdPolicy(0.85, 0.97))
    assert chosen["a"]["review_method"] == "max_recall at precision>=0.85 at 0.9 confidence"
    assert chosen["a"]["review"] >= plain["a"]["review"]
    assert policy.document() == {"review_min_precision": 0.85, "block_precision": 0.97, "precision_confidence": 0.9}
    # Without the option the record is what it was before the option existed.
    assert ThresholdPolicy(0.85, 0.97).document() == {"review_min_precision": 0.85, "block_precision": 0.97}


def _tail_sample(rng: np.random.Generator, positives: int, negatives: int) -> tuple[np.ndarray, np.ndarray]:
    """One label's calibrated scores shaped like our models': most positives far above the
    negatives, about 12 % of them ("hard" positives) deep among them."""
    hard = rng.binomial(positives, 0.12)
    logits = np.r_[rng.normal(4, 1, positives - hard), rng.normal(0.5, 1, hard), rng.normal(-1, 1, negatives)]
    actual = np.r_[np.ones(positives), np.zeros(negatives)]
    return actual[:, None], (1 / (1 + np.exp(-logits)))[:, None]


def test_bootstrap_median_thresholds_transfer_better_to_unseen_data():
    """What ``bootstrap_resamples`` is for. On calib sets the size of ours (80 positives, 1,100
    negatives per label) the plain rule sometimes reaches down to a few hard positives whose
    precision just touches 85 % on calib: a lucky point that does not hold on new rows. The
    median over resamples keeps only thresholds most resamples agree on. Over 30 calib sets it
    is never worse on a large population, better on average, and its worst case is better."""
    population_y, population_p = _tail_sample(np.random.default_rng(0), 20_000, 275_000)

    def on_population(threshold: float) -> tuple[float, float]:
        flagged = population_p[:, 0] >= threshold
        precision = float(population_y[flagged, 0].mean())
        recall = float(flagged[population_y[:, 0] == 1].mean())
        return 2 * precision * recall / (precision + recall), precision

    plain, median = ThresholdPolicy(0.85, 0.97), ThresholdPolicy(0.85, 0.97, bootstrap_resamples=101)
    results = {"plain": [], "median": []}
    for seed in range(30):
        y, p = _tail_sample(np.random.default_rng(100 + seed), 80, 1100)
        for name, policy in (("plain", plain), ("median", median)):
            results[name].append(on_population(choose_thresholds(y, p, ["a"], policy)["a"]["review"]))
    f1 = {name: np.array([r[0] for r in rows]) for name, rows in results.items()}
    precision = {name: np.array([r[1] for r in rows]) for name, rows in results.items()}
    assert (f1["median"] >= f1["plain"] - 0.005).all()
    assert f1["median"].mean() > f1["plain"].mean() + 0.003  # measured: +0.0075; better in 11 of 30, worse in none
    assert f1["median"].min() > f1["plain"].min()
    assert precision["median"].min() > precision["plain"].min()


def test_bootstrap_policy_is_recorded_reproducible_and_validated():
    rng = np.random.default_rng(5)
    y, p = _tail_sample(rng, 80, 1100)
    policy = ThresholdPolicy(0.85, 0.97, bootstrap_resamples=51, bootstrap_seed=7)
    chosen = choose_thresholds(y, p, ["a"], policy)
    assert chosen["a"]["review_method"] == "max_recall at precision>=0.85, median of 51 bootstrap resamples"
    assert chosen["a"]["block_method"] == "max_recall at precision>=0.97, median of 51 bootstrap resamples"
    assert choose_thresholds(y, p, ["a"], policy) == chosen  # same seed, same thresholds
    # The median is a threshold the rule chose on some resample: the score of a calib row.
    assert chosen["a"]["review"] in set(p[:, 0].tolist())
    assert policy.document() == {"review_min_precision": 0.85, "block_precision": 0.97,
                                 "bootstrap_resamples": 51, "bootstrap_seed": 7}
    from qingfin.models.analysis import policy_from_document

    assert policy_from_document({"policy": policy.document()}) == policy
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="bootstrap_resamples"):
            ThresholdPolicy(bootstrap_resamples=bad)


def test_bootstrap_median_of_a_mostly_unreachable_target_is_unreachable():
    from qingfin.models.calibration import _stable

    scores, actual = np.linspace(0, 1, 10), np.ones(10)
    resamples = np.arange(10)[None, :].repeat(5, axis=0)
    answers = iter([0.4, None, None, 0.6, None])  # 3 of 5 resamples cannot reach the target
    assert _stable(lambda a, s: next(answers), actual, scores, resamples) is None
    answers = iter([0.4, None, 0.5, 0.6, None])  # 2 of 5 cannot: their NEVER ranks above the rest
    assert _stable(lambda a, s: next(answers), actual, scores, resamples) == 0.6
    assert _stable(lambda a, s: 0.3, actual, scores, None) == 0.3  # no resamples: the rule as is


def test_bootstrap_keeps_an_unreachable_target_disabled_with_its_reason():
    actual = np.r_[np.ones(30), np.zeros(300)][:, None]
    scores = np.r_[np.linspace(0.9, 0.8, 30), np.linspace(0.95, 0.0, 300)][:, None]  # a negative on top
    chosen = choose_thresholds(actual, scores, ["a"], ThresholdPolicy(0.85, 0.999, bootstrap_resamples=21))
    assert chosen["a"]["block"] == NEVER
    assert any("block precision >= 0.999 unreachable" in note for note in chosen["a"]["notes"])
    assert chosen["a"]["review"] < NEVER


def test_bootstrap_thresholds_still_meet_each_target_on_all_calib_rows():
    # The median alone can sit where all of calib falls just short of a target (it did for one
    # block threshold of the release model: 96.9 % against 97 %); it is raised until calib meets it.
    policy = ThresholdPolicy(0.85, 0.97, bootstrap_resamples=51)
    for seed in range(170, 190):  # seed 179: the median block threshold alone has calib precision below 0.97
        y, p = _tail_sample(np.random.default_rng(seed), 80, 1100)
        chosen = choose_thresholds(y, p, ["a"], policy)["a"]
        for level, target in (("review", 0.85), ("block", 0.97)):
            if chosen[level] < NEVER:
                assert y[p[:, 0] >= chosen[level], 0].mean() >= target, (seed, level)
    # The one raised threshold says so in its notes.
    y, p = _tail_sample(np.random.default_rng(179), 80, 1100)
    notes = choose_thresholds(y, p, ["a"], policy)["a"]["notes"]
    assert any(note.startswith("block precision >= 0.97: bootstrap median") and "raised to" in note for note in notes), notes


def test_probability_floor_bounds_the_last_row_sent_to_review():
    # A sharp ranker: 95 clear positives on top, 1,000 clear negatives at the bottom, and in the
    # tail 5 hard positives mixed with 5 negatives at probabilities around 0.01. Precision of
    # everything flagged stays >= 0.85 all the way down, so the rule alone reaches into the tail.
    positives, negatives = np.linspace(0.99, 0.6, 95), np.linspace(0.002, 0.0, 1000)
    tail = np.array([0.012, 0.011, 0.010, 0.009, 0.008, 0.007, 0.006, 0.005, 0.004, 0.003])
    tail_labels = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 0])
    p = np.r_[positives, tail, negatives][:, None]
    y = np.r_[np.ones(95), tail_labels, np.zeros(1000)][:, None]
    plain = choose_thresholds(y, p, ["a"], ThresholdPolicy(0.85, 0.97))["a"]
    assert plain["review"] == 0.004  # the last tail positive: a row that is a violation ~1 time in 100

    floored = choose_thresholds(y, p, ["a"], ThresholdPolicy(0.85, 0.97, review_min_probability=0.3))["a"]
    assert floored["review"] == pytest.approx(0.6)  # the lowest clear positive: above the floor, target met
    assert y[p[:, 0] >= floored["review"], 0].mean() >= 0.85
    assert floored["review_method"] == "max_recall at precision>=0.85 and probability>=0.3"
    assert any("below the probability floor 0.3" in note for note in floored["notes"])
    assert floored["block"] >= floored["review"]
    # A threshold already above the floor is left alone, notes and all.
    high = choose_thresholds(y, p, ["a"], ThresholdPolicy(0.85, 0.97, review_min_probability=0.001))["a"]
    assert high["review"] == plain["review"] and high["notes"] == plain["notes"]


def test_probability_floor_is_not_applied_when_nothing_above_it_meets_the_target():
    # 20 negatives crowd the top (0.9): no threshold >= 0.5 reaches precision 0.85. Only going
    # down to the 200 positives below them does (200 / 220), so the floor cannot be honoured.
    p = np.r_[np.full(20, 0.9), np.linspace(0.2, 0.1, 200)][:, None]
    y = np.r_[np.zeros(20), np.ones(200)][:, None]
    chosen = choose_thresholds(y, p, ["a"], ThresholdPolicy(0.85, 0.97, review_min_probability=0.5))["a"]
    assert chosen["review"] == pytest.approx(0.1)  # the rule's own answer stands
    assert any("the floor is not applied" in note for note in chosen["notes"])


def test_probability_floor_is_recorded_and_validated():
    from qingfin.models.analysis import policy_from_document

    policy = ThresholdPolicy(0.85, 0.97, bootstrap_resamples=11, review_min_probability=0.3)
    assert policy.document()["review_min_probability"] == 0.3
    assert policy_from_document({"policy": policy.document()}) == policy
    assert "review_min_probability" not in ThresholdPolicy(0.85, 0.97).document()  # old documents unchanged
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="review_min_probability"):
            ThresholdPolicy(review_min_probability=bad)
