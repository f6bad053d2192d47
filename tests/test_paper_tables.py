"""The paper's numbers (edgekd/configs/paper_tables.yaml) read back through `edgekd.paper`.

Spot checks quote the paper's printed lines (from ../shared/reference/dual-model-weight-selection-skd.txt,
"±\\pm" as the text extraction prints it); where that file is beside the repository, every value is
checked against it, in printed order.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from edgekd.config import METHODS
from edgekd.data.layouts import LAYOUTS
from edgekd.paper import paper_tables, paper_value

PAPER = Path(__file__).resolve().parents[2] / "shared" / "reference" / "dual-model-weight-selection-skd.txt"
PM = re.compile(r"([0-9.]+) ±\\pm ([0-9.]+)")
VIT, CONVNEXT = "vit_tiny_patch16_224", "convnext_femto"
FRACTIONS = (0.01, 0.05, 0.1)


def printed(line: str) -> list[tuple[float, float]]:
    return [(float(m), float(s)) for m, s in PM.findall(line)]


@pytest.mark.parametrize("layout, student, method, line, table", [
    # Table 2 (chest X-ray), first row
    ("covid_radiography", VIT, "ours", r"ViT-S ViT-T Ours 0.750 ±\pm 0.012 0.844 ±\pm 0.004 0.869 ±\pm 0.002", 2),
    # Table 3 (lung CT), the ConvNeXt block's CM1 row
    ("covid_ct", CONVNEXT, "cm1", r"CM1 0.700 ±\pm 0.007 0.853 ±\pm 0.009 0.904 ±\pm 0.005", 3),
    # Table 4 (brain MRI), the ConvNeXt block's CM4 row
    ("brain_mri", CONVNEXT, "cm4", r"CM4 0.586 ±\pm 0.015 0.681 ±\pm 0.009 0.757 ±\pm 0.010", 4),
    # Table 6 (SKD strategies, ViT-T), CT
    ("covid_ct", VIT, "ours-cskd", r"Ours (CS-KD) 0.740 ±\pm 0.015 0.835 ±\pm 0.007 0.889 ±\pm 0.003", 6),
    ("brain_mri", VIT, "ours-tfkd", r"Ours (TF-KD) 0.658 ±\pm 0.030 0.781 ±\pm 0.016 0.852 ±\pm 0.013", 6),
])
def test_rows_by_fraction(layout, student, method, line, table):
    for fraction, (mean, std) in zip(FRACTIONS, printed(line), strict=True):
        v = paper_value(layout, student, method, fraction)
        assert (v.mean, v.std, v.table) == (mean, std, table)


def test_swap_table_columns_are_methods():
    # Table 5, ConvNeXt, "MRI 1% 0.747 ±\pm 0.029 0.754 ±\pm 0.023 0.656 ±\pm 0.027" (Ours, Ours_Swap, CM1)
    v = paper_value("brain_mri", CONVNEXT, "ours-swap", 0.01)
    assert (v.mean, v.std, v.table, v.row, v.column) == (0.754, 0.023, 5, "ConvNeXt / MRI / 1%", "Ours_Swap")
    assert str(v) == "0.754 ± 0.023 (Table 5)"


def test_main_tables_win_where_the_paper_reprints_a_cell():
    # Table 4 prints ViT-T/MRI/Ours 1% as "0.665 ±\pm 0.034"; Tables 5 and 6 reprint it as "0.665 ±\pm 0.030"
    reprints = [v for v in paper_tables().accuracy
                if (v.layout, v.student, v.method, v.fraction) == ("brain_mri", VIT, "ours", 0.01)]
    assert sorted((v.table, v.std) for v in reprints) == [(4, 0.034), (5, 0.030), (6, 0.030)]
    assert paper_value("brain_mri", VIT, "ours", 0.01).std == 0.034


def test_cells_the_paper_does_not_report():
    assert paper_value("fashion_mnist", VIT, "ours", 0.01) is None  # the stand-in dataset
    assert paper_value("covid_radiography", VIT, "kd", 0.01) is None
    assert paper_value("covid_radiography", VIT, "ours", 0.5) is None
    assert paper_value("covid_radiography", CONVNEXT, "ours-cskd", 0.01) is None  # Table 6 is ViT only


def test_every_main_cell_is_there_in_edgekd_names():
    values = paper_tables().accuracy
    assert {v.method for v in values} <= set(METHODS)
    assert {v.layout for v in values} == {"covid_radiography", "covid_ct", "brain_mri"} <= set(LAYOUTS)
    for layout, student, method, fraction in itertools.product(
            ("covid_radiography", "covid_ct", "brain_mri"), (VIT, CONVNEXT),
            ("ours", "ours-swap", "cm1", "cm2", "cm3", "cm4"), FRACTIONS):
        assert paper_value(layout, student, method, fraction) is not None, (layout, student, method, fraction)


PRINTED_METHOD = {"Ours": "ours", "Ours (SKD)": "ours", "Ours_Swap": "ours-swap", "Ours (CS-KD)": "ours-cskd",
                  "Ours (TF-KD)": "ours-tfkd", **{f"CM{k}": f"cm{k}" for k in range(1, 5)}}
PRINTED_DATASET = {"X-ray": "covid_radiography", "CT": "covid_ct", "MRI": "brain_mri"}
PRINTED_STUDENT = {"ViT": VIT, "ViT-T": VIT, "ConvNeXt": CONVNEXT, "ConvNeXt-F": CONVNEXT}


def test_printed_labels_name_the_same_cell():
    """Each value's printed row and column, read with the paper's names, give its edgekd key."""
    for v in paper_tables().accuracy:
        parts = v.row.split(" / ")
        if v.table == 5:  # row: model / dataset / fraction; column: method
            (model, dataset, percent), method = parts, v.column
        elif v.table == 6:  # row: dataset / method (ViT-S -> ViT-T, section 4.5); column: fraction
            (dataset, method), model, percent = parts, "ViT-T", v.column
        else:  # Tables 2-4, one dataset each; row: teacher / student / method; column: fraction
            (_, model, method), percent = parts, v.column
            dataset = {2: "X-ray", 3: "CT", 4: "MRI"}[v.table]
        key = (PRINTED_DATASET[dataset], PRINTED_STUDENT[model], PRINTED_METHOD[method], float(percent[:-1]) / 100)
        assert key == (v.layout, v.student, v.method, v.fraction), v


def test_table8_costs():
    # "X-ray Ours 2,434 1,328" / "CM1 1,932 1,031"
    xray = {c.method: (c.memory_mib, c.time_s) for c in paper_tables().cost if c.layout == "covid_radiography"}
    assert xray == {"ours": (2434, 1328), "cm1": (1932, 1031)}
    assert len(paper_tables().cost) == 6


def _table_lines(text: list[str], table: int, n: int) -> list[str]:
    """The n data lines of a printed table: the ones after its caption that carry mean ± std values."""
    start = next(i for i, line in enumerate(text) if line.startswith(f"Table {table}:"))
    return [line for line in text[start:] if PM.search(line)][:n]


@pytest.mark.skipif(not PAPER.is_file(), reason="the paper text is not beside the repository")
def test_every_value_matches_the_paper_text():
    text = PAPER.read_text().splitlines()
    for table in (2, 3, 4, 5, 6):
        entries = [v for v in paper_tables().accuracy if v.table == table]
        rows = [list(group) for _, group in itertools.groupby(entries, key=lambda v: v.row)]
        for row, line in zip(rows, _table_lines(text, table, len(rows)), strict=True):
            assert row[0].row.split(" / ")[-1] in line, (row[0].row, line)  # the row's own label is printed there
            assert [(v.mean, v.std) for v in row] == printed(line), (row[0].row, line)
    costs, dataset = {c.row: c for c in paper_tables().cost}, None
    start = next(i for i, line in enumerate(text) if line.startswith("Table 8:"))
    for line in text[start + 2:start + 8]:  # "X-ray Ours 2,434 1,328", then "CM1 1,932 1,031"
        *label, memory, seconds = line.replace(",", "").split()
        dataset = label[0] if len(label) == 2 else dataset
        c = costs[f"{dataset} / {label[-1]}"]
        assert (c.memory_mib, c.time_s) == (int(memory), int(seconds)), line
