"""edgekd.shared.clinical: intervals that cover, calibration that calibrates, a gate that catches a loss
confined to one small class (which overall accuracy and agreement cannot see) and passes a healthy artifact."""

import json
import time

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score

from edgekd.errors import EdgeKDError
from edgekd.shared.clinical.bootstrap import stratified_weights
from edgekd.shared.clinical.calibration import calibrate, expected_calibration_error, fit_temperature
from edgekd.shared.probs import softmax
from edgekd.shared.clinical.gate import GateConfig, Outcome, paired_gate
from edgekd.shared.clinical.metrics import clinical_metrics, weighted_auc, weighted_confusion
from edgekd.shared.clinical.operating_point import (OperatingPoint, apply_threshold, choose_threshold,
                                                    evaluate_operating_point)
from edgekd.shared.clinical.plots import confusion_matrix_plot, reliability_diagram, roc_curves


def _logits(counts, sep, seed=0):
    """Labels in class blocks of `counts` images, Gaussian logits with the true class raised by `sep`."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(counts)), counts)
    z = rng.normal(size=(len(y), len(counts)))
    z[np.arange(len(y)), y] += sep
    return y, z


def _names(k):
    return [f"c{i}" for i in range(k)]


def _onehot_prob(pred, k):
    """Probabilities whose argmax is `pred` (for tests that set predictions directly)."""
    return np.eye(k)[pred] * (1 - k * 0.05) + 0.05


# --- metrics ---------------------------------------------------------------------------------------

def test_point_estimates_are_sklearns():
    y, z = _logits([60, 30, 10], sep=1.5)
    p = softmax(z)
    m = clinical_metrics(y, _names(3), y_prob=p, n_boot=50)
    pred = p.argmax(1)
    for c, cm in enumerate(m.per_class):
        (npv, ppv), (spec, sens), (_, f1), _ = precision_recall_fscore_support(y == c, pred == c)
        got = [cm.sensitivity.value, cm.specificity.value, cm.ppv.value, cm.npv.value, cm.f1.value]
        assert got == pytest.approx([sens, spec, ppv, npv, f1])
        assert cm.auc.value == pytest.approx(roc_auc_score(y == c, p[:, c]))
    assert m.accuracy.value == pytest.approx(np.mean(pred == y))
    assert m.balanced_accuracy.value == pytest.approx(np.mean([m.per_class[c].sensitivity.value for c in range(3)]))
    assert m.macro_auc.value == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))


def test_vectorised_replicates_match_sklearn_sample_weight():
    """The bootstrap replicates are weighted reductions; pin them to sklearn's sample_weight results."""
    y, z = _logits([40, 25, 15], sep=1.0, seed=1)
    score = np.round(softmax(z)[:, 1], 1)  # coarse scores: ties, which AUC must count as one half
    pred = z.argmax(1)
    w = np.random.default_rng(2).integers(0, 4, size=(6, len(y)))
    cms = weighted_confusion(w, y, pred, 3)
    aucs = weighted_auc(w, y == 1, score)
    for b in range(len(w)):
        assert cms[b] == pytest.approx(confusion_matrix(y, pred, labels=[0, 1, 2], sample_weight=w[b]))
        assert aucs[b] == pytest.approx(roc_auc_score(y == 1, score, sample_weight=w[b]))


def test_stratified_resampling_keeps_every_class_at_its_size():
    y = np.array([0] * 50 + [1] * 3 + [2] * 20)
    w = np.concatenate(list(stratified_weights(y, 300, seed=0)))
    assert w.shape == (300, len(y))
    for c, n in enumerate([50, 3, 20]):
        assert (w[:, y == c].sum(1) == n).all()  # a 3-image class is drawn exactly 3 times, every replicate
    assert w[:, y == 1].std(0).max() > 0  # ... and really resampled
    again = np.concatenate(list(stratified_weights(y, 300, seed=0)))
    other = np.concatenate(list(stratified_weights(y, 300, seed=1)))
    assert (w == again).all() and (w != other).any()


def test_bootstrap_intervals_cover_known_rates_near_nominal():
    """200 simulated test sets with known per-class error rates; the 95 % intervals of sensitivity and
    specificity (3 classes each: 1200 intervals) must cover the true rates 90-99 % of the time.
    B=200, not 1000, keeps it under a few seconds: at B=200 the percentile ends' Monte-Carlo error costs
    under a point of coverage, well inside the band."""
    counts = np.array([120, 50, 30])
    confusion = np.array([[0.85, 0.10, 0.05], [0.15, 0.80, 0.05], [0.10, 0.10, 0.80]])
    true_sens = np.diag(confusion)
    true_spec = [np.sum(np.delete(counts * (1 - confusion[:, c]), c)) / np.sum(np.delete(counts, c)) for c in range(3)]
    y = np.repeat(np.arange(3), counts)
    rng = np.random.default_rng(0)
    covered = []
    for sim in range(200):
        pred = (rng.random(len(y))[:, None] > np.cumsum(confusion[y], 1)).sum(1)
        m = clinical_metrics(y, _names(3), y_pred=pred, n_boot=200, seed=sim)
        for c, cm in enumerate(m.per_class):
            covered += [cm.sensitivity.lo <= true_sens[c] <= cm.sensitivity.hi,
                        cm.specificity.lo <= true_spec[c] <= cm.specificity.hi]
    assert 0.90 <= np.mean(covered) <= 0.99


def test_same_seed_same_intervals():
    y, z = _logits([30, 20], sep=1.0)
    a, b, c = (clinical_metrics(y, _names(2), y_prob=softmax(z), n_boot=200, seed=s).to_dict() for s in (0, 0, 1))
    assert a == b and a != c


@pytest.mark.filterwarnings("error")  # the note says why; no warning noise on a clinic's console
def test_undefined_metrics_are_nan_with_a_reason_not_a_crash():
    y = np.array([0, 0, 1, 1, 1])  # class 2 absent from the test set
    m = clinical_metrics(y, _names(3), y_pred=np.zeros(5, int), n_boot=100)  # always predicts c0
    c0, c1, c2 = m.per_class
    assert np.isnan(c1.ppv.value) and c1.ppv.note == "never predicted"
    assert np.isnan(c0.npv.value) and c0.npv.note == "predicted for every image"
    assert np.isnan(c2.sensitivity.value) and c2.sensitivity.note == "no images of this class"
    assert np.isnan(c2.f1.value) and np.isnan(c0.auc.value)  # no probabilities given
    assert m.balanced_accuracy.value == pytest.approx(0.5)  # over the classes present: (1 + 0) / 2
    assert c0.sensitivity.value == 1 and "not certainty" in c0.sensitivity.note  # 2/2 is not a sure thing
    assert "never predicted" in m.to_markdown() and "n/a" in m.to_markdown()
    d = json.loads(json.dumps(m.to_dict(), allow_nan=False))  # results.json must stay valid JSON
    assert d["per_class"]["c1"]["ppv"]["value"] is None
    p = _onehot_prob(np.array([0, 1, 1, 1, 0]), 3)
    with_prob = clinical_metrics(y, _names(3), y_prob=p, n_boot=100)
    assert np.isnan(with_prob.per_class[2].auc.value) and not np.isnan(with_prob.macro_auc.value)


def test_bad_inputs_name_the_fix():
    with pytest.raises(EdgeKDError, match="fix:"):
        clinical_metrics([0, 3], _names(3), y_pred=[0, 1])
    with pytest.raises(EdgeKDError, match="shape"):
        clinical_metrics([0, 1], _names(3), y_prob=np.ones((2, 2)) / 2)
    with pytest.raises(EdgeKDError, match="empty"):
        clinical_metrics([], _names(3), y_pred=[])
    with pytest.raises(EdgeKDError, match="one per image"):
        clinical_metrics([0, 1], _names(3), y_pred=[0, 1, 2])


def test_thousand_images_ten_classes_thousand_replicates_in_seconds():
    y, z = _logits([100] * 10, sep=2.0)
    start = time.perf_counter()
    m = clinical_metrics(y, _names(10), y_prob=softmax(z), n_boot=1000)
    assert time.perf_counter() - start < 10  # vectorised; one sklearn call per replicate and class would not fit
    assert all(c.auc.lo < c.auc.value < c.auc.hi for c in m.per_class)


# --- calibration -----------------------------------------------------------------------------------

def test_temperature_scaling_fixes_an_overconfident_model():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4000, 5)) * 1.5
    y = (rng.random(4000)[:, None] > np.cumsum(softmax(z), 1)).sum(1)  # labels drawn from softmax(z): calibrated
    over = z * 5  # same predictions, far too sure of them
    r = calibrate(over[:2000], y[:2000], over[2000:], y[2000:])
    assert 4 < r.temperature < 6.5
    assert r.after.ece < r.before.ece / 3 and r.after.nll < r.before.nll and r.after.brier < r.before.brier
    assert "ECE (15 bins)" in r.to_markdown()


def test_ece_by_hand():
    # 10 images at confidence 0.9 with 8 right (gap 0.1) and 5 at 0.6 all right (gap 0.4): (10*0.1 + 5*0.4) / 15
    p = np.array([[0.9, 0.1]] * 10 + [[0.6, 0.4]] * 5)
    y = np.array([0] * 8 + [1] * 2 + [0] * 5)
    assert expected_calibration_error(y, p) == pytest.approx(0.2)


# --- the paired gate -------------------------------------------------------------------------------

def _planted(seed=1):
    """Reference logits on 5 classes, class c3 at 10 % of 1000 images; the artifact subtracts a constant
    from c3's logit so that 10 % of the images predicted c3 move to another class."""
    y, z = _logits([300, 300, 200, 100, 100], sep=4.5, seed=seed)
    pred = z.argmax(1)
    others = np.delete(z, 3, axis=1).max(1)
    bias = np.quantile((z[:, 3] - others)[pred == 3], 0.10)
    art = z.copy()
    art[:, 3] -= bias
    return y, z, art


def test_gate_fails_a_loss_confined_to_one_small_class_and_names_it():
    y, z, art = _planted()
    ref_pred, art_pred = z.argmax(1), art.argmax(1)
    # today's overall checks cannot see it: agreement >= 98.5 %, accuracy drop <= 1 point
    assert np.mean(ref_pred == art_pred) >= 0.985
    assert np.mean(ref_pred == y) - np.mean(art_pred == y) <= 0.01
    g = paired_gate(y, softmax(z), softmax(art), _names(5))
    assert g.outcome is Outcome.FAIL and not g.passed()
    assert [c.name for c in g.with_outcome(Outcome.FAIL)] == ["c3"]
    c3 = g.classes[3]
    lost = np.flatnonzero((y == 3) & (ref_pred == 3) & (art_pred != 3))
    assert c3.sensitivity.losses == tuple(lost) and set(lost) <= set(c3.flipped)
    assert c3.sensitivity.diff.value < -0.05 and c3.sensitivity.diff.hi < 0
    paths = [f"img/{i}.png" for i in range(len(y))]
    assert f"img/{lost[0]}.png" in g.to_markdown(paths) and "FAIL" in g.to_markdown(paths)
    assert json.loads(json.dumps(g.to_dict(), allow_nan=False))["per_class"]["c3"]["outcome"] == "fail"


def test_gate_passes_an_identical_and_a_slightly_noisy_artifact():
    y, z, _ = _planted()
    same = paired_gate(y, softmax(z), softmax(z), _names(5))
    assert same.outcome is Outcome.PASS and same.passed(strict=True)
    assert all(not c.flipped for c in same.classes)
    noisy = z + np.random.default_rng(3).normal(scale=0.3, size=z.shape)  # INT8-like: a few flips each way
    assert 0 < np.mean(noisy.argmax(1) != z.argmax(1)) < 0.01
    assert paired_gate(y, softmax(z), softmax(noisy), _names(5)).outcome is Outcome.PASS


def test_gate_fails_an_artifact_that_loses_calibration():
    y, z = _logits([300, 300, 200, 100, 100], sep=2.0)
    z = z / fit_temperature(z, y)  # a calibrated reference, right on about 3 images in 4
    g = paired_gate(y, softmax(z), softmax(z * 3), _names(5))  # same predictions, far more confident
    assert all(c.outcome is Outcome.PASS for c in g.classes)
    assert g.calibration.increase > 0.02 and g.outcome is Outcome.FAIL


def _discordant(n, losses, gains, k=3, n_other=400):
    """Class 0 with n images (reference right on the first n - gains), `losses` lost and `gains` gained,
    moving to/from class 2; classes 1 and 2 have n_other images each, all right in both."""
    y = np.repeat([0, 1, 2], [n, n_other, n_other])
    ref, art = y.copy(), y.copy()
    ref[n - gains:n] = 2  # reference wrong, artifact right
    art[:losses] = 2  # artifact wrong, reference right
    return y, _onehot_prob(ref, k), _onehot_prob(art, k)


def test_mcnemar_is_the_exact_binomial_on_discordant_pairs():
    y, ref, art = _discordant(60, losses=7, gains=1)
    s = paired_gate(y, ref, art, _names(3)).classes[0].sensitivity
    assert (len(s.losses), len(s.gains)) == (7, 1)
    assert s.p_value == pytest.approx(2 * (1 + 8) / 2 ** 8)  # two-sided: 2 * P(X <= 1), X ~ Bin(8, 1/2)
    assert s.diff.value == pytest.approx(-6 / 60)


def test_gate_rule_needs_both_a_loss_beyond_the_margin_and_a_real_one():
    real_small = paired_gate(*_discordant(400, losses=8, gains=0), _names(3)).classes[0].sensitivity
    assert real_small.p_value < 0.05 and real_small.outcome is Outcome.PASS  # real, but 2 points < margin
    one_flip = paired_gate(*_discordant(15, losses=1, gains=0), _names(3)).classes[0].sensitivity
    assert one_flip.diff.value < -0.05 and one_flip.outcome is Outcome.INCONCLUSIVE  # 6.7 points, one image
    wide = paired_gate(*_discordant(15, losses=1, gains=0), _names(3), GateConfig(sensitivity_margin=0.5))
    assert wide.classes[0].sensitivity.outcome is Outcome.PASS  # margins are parameters


@pytest.mark.filterwarnings("error")
def test_gate_with_a_class_absent_from_the_test_set_is_inconclusive_not_a_crash():
    y = np.repeat([0, 1], [30, 30])  # c2 has no test images
    p = _onehot_prob(y, 3)
    g = paired_gate(y, p, p, _names(3))
    c2 = g.classes[2]
    assert c2.sensitivity.outcome is Outcome.INCONCLUSIVE and "no test images" in c2.sensitivity.reason
    assert g.passed() and not g.passed(strict=True)
    assert json.loads(json.dumps(g.to_dict(), allow_nan=False))["per_class"]["c2"]["sensitivity"]["reference"] is None


def test_inconclusive_estimates_how_many_more_images_decide():
    """At the same discordance rate, twice the estimated total decides and half of it does not: the
    estimate (a normal approximation) is the right size, if not exact."""
    base = _discordant(40, losses=1, gains=0)
    g = paired_gate(*base, _names(3))
    c0 = g.classes[0]
    assert c0.outcome is Outcome.INCONCLUSIVE and c0.sensitivity.more_images > 0
    assert g.passed() and not g.passed(strict=True)
    needed = 40 + c0.sensitivity.more_images

    def outcome_at(total):
        reps = -(-total // 40)
        return paired_gate(*(np.tile(a, (reps,) + (1,) * (a.ndim - 1)) for a in base), _names(3)).classes[0].outcome

    assert outcome_at(2 * needed) is Outcome.PASS and outcome_at(needed // 2) is Outcome.INCONCLUSIVE


# --- operating point -------------------------------------------------------------------------------

def test_operating_point_is_the_highest_threshold_reaching_the_target():
    y, z = _logits([200, 100, 100], sep=1.5, seed=4)
    p = softmax(z)
    op = choose_threshold(y, p, _names(3), "c1", target_sensitivity=0.9)
    assert op.index == 1 and op.val_sensitivity >= 0.9
    higher = p[:, 1] >= np.nextafter(op.threshold, 1)  # any higher threshold misses the target
    assert higher[y == 1].mean() < 0.9
    assert OperatingPoint.from_dict(json.loads(json.dumps(op.to_dict()))) == op
    y_test, z_test = _logits([200, 100, 100], sep=1.5, seed=5)
    r = evaluate_operating_point(y_test, softmax(z_test), op, n_boot=300)
    called = apply_threshold(softmax(z_test), op)
    assert r.sensitivity.value == pytest.approx(called[y_test == 1].mean())
    assert r.specificity.value == pytest.approx(1 - called[y_test != 1].mean())
    assert r.sensitivity.lo < r.sensitivity.value < r.sensitivity.hi and (r.n_positive, r.n_negative) == (100, 300)


def test_operating_point_bad_inputs():
    y, z = _logits([20, 20], sep=1.0)
    with pytest.raises(EdgeKDError, match="not one of"):
        choose_threshold(y, softmax(z), _names(2), "glioma")
    with pytest.raises(EdgeKDError, match="target sensitivity"):
        choose_threshold(y, softmax(z), _names(2), "c1", target_sensitivity=1.5)
    with pytest.raises(EdgeKDError, match="both"):
        choose_threshold(np.zeros(40, int), softmax(z), _names(2), "c1")


# --- plots -----------------------------------------------------------------------------------------

def test_plots_write_pngs_even_with_an_absent_class(tmp_path):
    y, z = _logits([40, 20, 0], sep=1.5)
    p = softmax(z)
    paths = [reliability_diagram(y, {"before": softmax(z * 3), "after": p}, tmp_path / "rel.png"),
             roc_curves(y, p, _names(3), tmp_path / "roc.png"),
             confusion_matrix_plot(y, p.argmax(1), _names(3), tmp_path / "cm.png")]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
