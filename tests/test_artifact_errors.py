"""A garbage, empty or truncated .onnx / .xml, or a file that is no artifact, given to bench,
predict, verify or explain: one line naming the file and the fix, exit 2 (never a traceback,
never exit 1, which means "verify failed")."""

from __future__ import annotations

import pytest

from edgekd.cli import main
from tests.export_fixtures import cached_export_all


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run, out, _ = cached_export_all(tmp_path_factory.getbasetemp() / "edgekd_export_cache", "vit")
    return run, out


def _bad_files(tmp_path, out):
    good = (out / "onnx" / "model.onnx").read_bytes()
    files = {"garbage.onnx": b"this is not a protobuf", "empty.onnx": b"", "truncated.onnx": good[: len(good) // 3],
             "garbage.xml": b"<net><layers><oops", "model.pt": b"\x80\x04 not an artifact"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return [tmp_path / n for n in files]


@pytest.mark.parametrize("verb", ["bench", "predict", "verify", "explain"])
def test_unreadable_artifacts_are_one_line_user_errors(exported, tmp_path, capsys, verb):
    run, out = exported
    image = next((run / "data").parent.rglob("*.png"), None) or out / "report.png"
    for bad in _bad_files(tmp_path, out):
        argv = {"bench": ["bench", str(bad), "--allow-unverified", "--iters", "2", "--throughput-batch", "0"],
                "predict": ["predict", str(bad), str(image), "--allow-unverified"],
                "verify": ["verify", "--run", str(run), str(bad)],
                "explain": ["explain", "--artifact", str(bad), str(image)]}[verb]
        assert main(argv) == 2, (verb, bad.name)
        err = capsys.readouterr().err.strip()
        assert "Traceback" not in err and len(err.splitlines()) == 1, (verb, bad.name, err)
        assert bad.name in err and "fix:" in err, (verb, bad.name, err)
