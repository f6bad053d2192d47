"""Subgroups: a CSV's extra columns and a DICOM header's Manufacturer/PatientSex become per-image
attributes of the manifest; the model card and verify break the per-class metrics down by them and flag
a subgroup whose positives are missed more than the rest's. Manifests without attributes are unchanged."""

from __future__ import annotations

import csv
import json
import re
import shutil

import numpy as np
import pytest

from edgekd.data import Manifest, discover
from edgekd.data.cli import summarize
from edgekd.errors import EdgeKDError
from edgekd.shared.clinical.gate import GateConfig
from edgekd.shared.clinical.subgroups import MAX_VALUES, Status, holm, subgroup_metrics
from tests.fixtures_data import write_image

CLASSES = ["normal", "covid"]
PER_SITE = 30  # images of each class at each site


def make_sites(root):
    """images/ + labels.csv with path,label,patient,site,scanner: two sites, 30 normal + 30 covid each."""
    rows = []
    for site in ("A", "B"):
        for cls in CLASSES:
            for i in range(PER_SITE):
                rel = f"images/{site}_{cls}_{i}.png"
                write_image(root / rel, 8, 8, seed=i)
                rows.append({"path": rel, "label": cls, "patient": f"{site}{cls}{i}", "site": site,
                             "scanner": "" if i == 0 else f"S{i % 2}"})
    out = root / "labels.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    root = tmp_path_factory.mktemp("sites")
    return Manifest.from_index(discover(make_sites(root)), meta={"part": "test"})


def missing_positives(m: Manifest, missed: dict[str, int]) -> np.ndarray:
    """Probabilities (N, 2): right on every image except the first `missed[site]` covid images of each site."""
    covid = CLASSES.index("covid")
    pred = np.array(m.labels)
    for site, k in missed.items():
        idx = [i for i, (y, s) in enumerate(zip(m.labels, m.attributes["site"])) if y == covid and s == site]
        pred[idx[:k]] = 1 - covid
    return np.where(np.eye(2)[pred] > 0, 0.9, 0.1)


def test_csv_columns_become_manifest_attributes(sites, tmp_path):
    assert list(sites.attributes) == ["site", "scanner"]  # path, label and the patient (group) column are not
    assert sites.attributes["site"].count("B") == 2 * PER_SITE
    assert sites.attributes["scanner"].count(None) == 4  # an empty cell is unknown, not a subgroup ""
    back = Manifest.load(sites.save(tmp_path / "test.json"))
    assert back.attributes == sites.attributes and back.items == sites.items
    assert back.sha256 == Manifest(sites.root, sites.layout, sites.classes, sites.items).sha256  # hash: items only


def test_a_site_whose_positives_are_missed_more_is_flagged(sites):
    probs = missing_positives(sites, {"A": 2, "B": 12})  # sensitivity 0.93 at A, 0.60 at B
    r = subgroup_metrics(sites.labels, probs, CLASSES, sites.attributes)
    ((sub, gap),) = r.flagged
    assert (sub.label, gap.name, gap.status) == ("site = B", "covid", Status.FLAGGED)
    assert gap.subgroup == pytest.approx(0.6) and gap.rest.value == pytest.approx(28 / 30)
    assert gap.gap.lo > 0 and sub.metrics.per_class[1].sensitivity.hi < gap.rest.value
    assert gap.p_value < 0.05  # Fisher's exact 18/30 vs 28/30 (0.0024), Holm over 4 site-class pairs
    assert "site = B: covid sensitivity 0.600" in r.to_markdown()
    flagged = r.to_dict()["columns"]["site"]["B"]["sensitivity_vs_rest"]["covid"]
    assert flagged["status"] == "flagged" and flagged["n"] == PER_SITE
    assert any("scanner: 4 images without a value" in n for n in r.notes)


def test_balanced_sites_are_not_flagged(sites):
    r = subgroup_metrics(sites.labels, missing_positives(sites, {"A": 3, "B": 3}), CLASSES, sites.attributes)
    assert not r.flagged and {g.status for s in r.subgroups for g in s.gaps} == {Status.OK}
    assert "**Subgroups: 0 flagged**" in r.to_markdown()


def test_a_gap_beyond_the_margin_that_may_be_chance_is_uncertain_not_flagged(sites):
    r = subgroup_metrics(sites.labels, missing_positives(sites, {"A": 3, "B": 6}), CLASSES, sites.attributes)
    gap = next(g for s in r.subgroups if s.label == "site = B" for g in s.gaps if g.name == "covid")
    assert gap.gap.value == pytest.approx(0.1) and gap.p_value >= 0.05 and gap.status is Status.UNCERTAIN
    assert not r.flagged


def test_random_site_labels_on_a_healthy_model_are_rarely_flagged():
    """Sites drawn at random carry no real difference: flagged in about alpha of reports. Deciding by the
    bootstrap interval instead flags most of them (a side at 35/35 has a zero-width interval), and without
    Holm's correction 3 sites x 5 classes give 15 chances per report."""
    rng = np.random.default_rng(0)
    k, n = 5, 500
    y = np.repeat(np.arange(k), n // k)
    probs = np.eye(k)[np.where(rng.random(n) < 0.9, y, rng.integers(0, k, n))] * 0.9 + 0.02
    cfg = GateConfig(n_boot=20)  # the flag does not depend on the bootstrap; keep the test fast
    reports = [subgroup_metrics(y, probs, [f"c{c}" for c in range(k)], {"site": list(rng.choice(list("ABC"), n))},
                                cfg) for _ in range(20)]
    assert sum(bool(r.flagged) for r in reports) <= 2


def test_holm_by_hand():
    adjusted = holm(np.array([[0.01, 0.04], [0.03, np.nan]]))
    np.testing.assert_allclose(adjusted, [[0.03, 0.06], [0.06, np.nan]])


def test_too_few_images_are_reported_as_such_never_flagged():
    y = np.array([1] * 40 + [0] * 40)
    site = ["small"] * 4 + ["big"] * 36 + ["big"] * 40
    probs = np.eye(2)[y] * 0.8 + 0.1
    probs[:4] = [0.9, 0.1]  # every positive of the small site missed: sensitivity 0 vs 1
    r = subgroup_metrics(y, probs, ["neg", "pos"], {"site": site})
    small = next(s for s in r.subgroups if s.value == "small")
    assert small.gaps[1].n == 4 and small.gaps[1].status is Status.TOO_FEW and not r.flagged
    ids = {"id": [str(i) for i in range(80)]}  # an identifier column is not a subgroup column
    assert not subgroup_metrics(y, probs, ["neg", "pos"], ids).subgroups
    assert f"more than {MAX_VALUES}" in subgroup_metrics(y, probs, ["neg", "pos"], ids).notes[0]


def test_the_flag_uses_the_gates_sensitivity_margin(sites):
    probs = missing_positives(sites, {"A": 2, "B": 12})
    wide = subgroup_metrics(sites.labels, probs, CLASSES, sites.attributes, GateConfig(sensitivity_margin=0.4))
    assert not wide.flagged and wide.margin == 0.4


def test_dicom_header_gives_manufacturer_and_sex_columns(tmp_path):
    from pydicom.data import get_testdata_file  # real scanner files shipped with pydicom

    for cls, name in (("ct", "CT_small.dcm"), ("mr", "MR_small.dcm")):
        (tmp_path / "real" / cls).mkdir(parents=True)
        shutil.copy(get_testdata_file(name), tmp_path / "real" / cls / name)
    index = discover(tmp_path / "real")
    assert index.layout == "dicom"
    m = Manifest.load(Manifest.from_index(index).save(tmp_path / "m.json"))
    assert m.attributes == {"Manufacturer": ["GE MEDICAL SYSTEMS", "TOSHIBA_MEC"], "PatientSex": ["O", "F"]}
    assert [s.group for s in index.samples] == ["1CT1", "4MR1"]  # PatientID still read in the same pass
    assert summarize(index, "auto", 0.2, 0)["subgroups"] == {  # `edgekd data inspect` lists them before training
        "Manufacturer": {"GE MEDICAL SYSTEMS": 1, "TOSHIBA_MEC": 1}, "PatientSex": {"O": 1, "F": 1}}


# -------------------------------------------------------------- manifests without attributes: unchanged

OLD = {"root": "/data/x", "layout": "csv", "classes": ["a", "b"],
       "items": [["images/a_0.png", 0], ["images/b_1.png", 1], ["idx://train-images-idx3-ubyte.gz#7", 1]],
       # written by edgekd before attributes existed (commit 40e62cc)
       "sha256": "6bebb890be86a83b0fb49ccc6f753414059427aa8cdab9d98d98a169e543de82", "meta": {"part": "test"}}


def test_old_manifests_load_and_hash_unchanged(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps(OLD))
    m = Manifest.load(path)
    assert m.attributes == {} and m.sha256 == OLD["sha256"]
    assert m.to_dict() == OLD  # saved again: byte-for-byte the old format, no "attributes" key


def test_misaligned_attributes_are_refused(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({**OLD, "attributes": {"site": ["A", "B"]}}))  # 2 values for 3 items
    with pytest.raises(EdgeKDError, match="one per item"):
        Manifest.load(path)


# -------------------------------------------------------------- wiring: verify and the model card


class Identity:
    """A 'model' that returns its input: the batches carry the logits."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        return x


def test_verify_reports_subgroups_per_artifact_and_nothing_without_attributes(sites):
    from edgekd.export.verify import verify

    logits = np.log(missing_positives(sites, {"A": 2, "B": 12})).astype(np.float32)
    y = np.array(sites.labels)

    def run(attributes):
        batches = [(logits[i:i + 32], y[i:i + 32]) for i in range(0, len(y), 32)]
        (r,) = verify({"art": (Identity(), "fp32")}, Identity(), batches, classes=CLASSES, attributes=attributes)
        return r

    with_attr, without = run(sites.attributes), run(None)
    assert with_attr.subgroups is not None and with_attr.subgroups.flagged[0][0].label == "site = B"
    assert with_attr.passed  # a flag describes the model, it does not fail the artifact
    assert without.subgroups is None and "subgroups" not in without.to_dict()
    d = with_attr.to_dict()
    assert d.pop("subgroups")["flagged"] and d == without.to_dict()


def test_model_card_gains_a_subgroup_section_only_with_attributes(sites, tmp_path):
    from edgekd.config import TrainConfig
    from edgekd.evaluation import Calibration, evaluate_student, write_model_card
    from edgekd.shared.card import StudentCard

    logits = np.log(missing_positives(sites, {"A": 2, "B": 12}))
    labels = np.array(sites.labels)
    card = StudentCard("tf_efficientnet_lite0", 2, CLASSES, weights_sha256="0" * 64, test_manifest="data/test.json")
    results = {"test": {"n": len(labels), "accuracy": 0.9, "macro_f1": 0.9}, "n_train": 10}
    cards = {}
    for name, attributes in (("plain", {}), ("sites", sites.attributes)):
        ev = evaluate_student(labels, logits, CLASSES, Calibration(None, "calibration=none"), attributes)
        assert (ev.subgroups is None) == (not attributes)
        (tmp_path / name).mkdir()
        text = write_model_card(tmp_path / name, TrainConfig(), results, card, ev).read_text()
        cards[name] = re.sub(r"Generated .* by", "Generated by", text)
    section = re.search(r"## Subgroups\n.*?(?=## Calibration)", cards["sites"], re.S).group(0)
    assert "site = B: covid sensitivity" in section and "### By site" in section
    assert cards["sites"].replace(section, "") == cards["plain"] and "Subgroups" not in cards["plain"]
