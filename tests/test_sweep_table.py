"""The sweep table beside the paper: a cell on one of the paper's datasets (recognised by its
layout) shows the paper's Table 2-6 value and the difference; a split that mixes patients says so."""

from __future__ import annotations

import json
from pathlib import Path

from edgekd.sweep import Cell, collect, to_markdown


def _cell(out: Path, cell: Cell, accuracy: float, layout: str, student: str, split: dict | None) -> None:
    run = cell.run_dir(out)
    (run / "data").mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({"accuracy": accuracy, "macro_f1": accuracy}))
    (run / "config.yaml").write_text(f"model:\n  student: {student}\n")
    meta = {"part": "test", **({"split": split} if split else {})}
    (run / "data" / "test.json").write_text(json.dumps({"layout": layout, "items": [], "meta": meta}))


def test_paper_value_and_difference_beside_each_cell(tmp_path):
    cells = [Cell("/data/xray", 0.01, "ours", d) for d in range(2)] + [Cell("/data/xray", 0.01, "ours-swap", 0)]
    for c, acc in zip(cells, (0.76, 0.74, 0.70)):
        _cell(tmp_path, c, acc, "covid_radiography", "vit_tiny_patch16_224", None)
    summary = collect(cells, tmp_path)
    entry = summary["table"]["xray"]["ours"]["0.01"]
    assert entry["paper"]["mean"] == 0.750 and entry["paper"]["table"] == 2  # Table 2, ViT-S / ViT-T / Ours, 1 %
    md = to_markdown(summary, [0.01])
    assert "0.750 ± 0.014 [paper 0.750 ± 0.012, T2; Δ +0.000]" in md
    assert "paper" in summary["table"]["xray"]["ours-swap"]["0.01"]  # Table 5 prints Ours_Swap


def test_no_paper_value_off_the_papers_datasets(tmp_path):
    c = Cell("fashion-mnist", 0.01, "ours", 0)
    _cell(tmp_path, c, 0.8, "fashion_mnist", "tf_efficientnet_lite0", None)
    assert "paper" not in to_markdown(collect([c], tmp_path), [0.01])


def test_a_split_that_mixes_patients_is_named_in_the_table(tmp_path):
    c = Cell("/data/ct", 0.01, "cm1", 0)
    split = {"requested": "stratified", "mode": "stratified", "reason": "", "groups_train": 17, "groups_test": 13,
             "groups_both": 13}
    _cell(tmp_path, c, 0.9, "covid_ct", "vit_tiny_patch16_224", split)
    md = to_markdown(collect([c], tmp_path), [0.01])
    assert "13 of 17 patients have images in both train and test" in md and "patients leak" in md
