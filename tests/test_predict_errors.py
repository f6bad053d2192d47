"""`edgekd predict` with what a clinic will hand it: wrong argument order, bad flags, a folder
with one unreadable file, and a broken (NaN) model. One line and exit 2 for user errors; the
readable images are still classified; NaN is never printed as a probability."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgekd.cli import main
from tests.export_fixtures import cached_export_all


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    run, out, _ = cached_export_all(tmp_path_factory.getbasetemp() / "edgekd_export_cache", "vit")
    return run, out / "onnx" / "model.onnx"


@pytest.fixture()
def folder(artifact, tmp_path):
    from edgekd.data import Manifest

    run, _ = artifact
    items = Manifest.load(run / "data" / "test.json").items[:3]
    for i, (path, _) in enumerate(items):
        shutil.copy(path, tmp_path / f"ok{i}.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return tmp_path


def test_swapped_arguments_are_one_line_and_exit_2(artifact, folder, capsys):
    _, model = artifact
    assert main(["predict", str(folder / "ok0.png"), str(model)]) == 2
    err = capsys.readouterr().err
    assert "artifact comes first" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flag", ["--top-k", "--batch-size", "--threads"])
def test_non_positive_flags_are_refused(artifact, folder, capsys, flag):
    _, model = artifact
    assert main(["predict", str(model), str(folder), flag, "0"]) == 2
    assert f"{flag} 0: must be at least 1" in capsys.readouterr().err


def test_one_unreadable_file_is_skipped_and_listed(artifact, folder, capsys):
    _, model = artifact
    out = folder / "res.json"
    assert main(["predict", str(model), str(folder), "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in got) == ["ok0.png", "ok1.png", "ok2.png"]
    err = capsys.readouterr().err
    assert "skipped" in err and "broken.png" in err and "1 of 4 images skipped" in err


def test_a_nan_model_prints_no_probability_and_exits_1(artifact, folder, tmp_path, capsys):
    _, model = artifact
    m = onnx.load(str(model))
    init = next(t for t in m.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) >= 2)
    init.CopyFrom(numpy_helper.from_array(np.full_like(numpy_helper.to_array(init), np.nan), init.name))
    broken = tmp_path / "nan.onnx"
    onnx.save(m, str(broken))
    assert main(["predict", str(broken), str(folder / "ok0.png")]) == 2  # a changed file is not the verified one
    assert "is not a verified artifact" in capsys.readouterr().err
    assert main(["predict", str(broken), str(folder / "ok0.png"), "--allow-unverified"]) == 1
    captured = capsys.readouterr()
    assert "nan" not in captured.out.lower() and captured.out.strip() == ""
    assert "non-finite" in captured.err and "ok0.png" in captured.err
