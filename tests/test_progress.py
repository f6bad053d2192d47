"""The console of a long run: one timed line per export stage, library logs folded into a file,
and no progress bars but edgekd's own."""

from __future__ import annotations

import io
import logging
import re

import pytest
import rich

from edgekd.export.progress import bar, search_try, stage, step
from edgekd.shared.logs import folded_logs, library

TIMED = r"\d+\.\d s"


def _lines(err: str) -> list[str]:
    """What a terminal shows: per line, the text after the last carriage return (bars drawn over)."""
    return [line.rsplit("\r", 1)[-1] for line in err.rstrip("\n").split("\n")]


def test_each_stage_is_one_line_with_its_wall_time(capsys):
    with stage("ONNX"):
        pass
    with stage("verify"):
        for _ in bar(range(3), 3, "verify", "batch"):
            pass
    lines = _lines(capsys.readouterr().err)
    assert len(lines) == 2  # the bar drew over the verify line and cleared itself
    assert re.fullmatch(rf"export: ONNX \.\.\. {TIMED}", lines[0])
    assert re.fullmatch(rf"export: verify \.\.\. {TIMED}", lines[1])


def test_steps_inside_a_stage_are_timed_and_the_stage_line_is_repeated(capsys):
    from edgekd.export.int8_accuracy import Score, SearchTry

    tries = [SearchTry("nncf.quantize", 98.9, Score(97.0, 0.5), Score(96.5, 0.6))]
    with stage("build openvino-int8"):
        search_try(tries)
        step("pruned")
    with pytest.raises(RuntimeError), stage("publish"):
        raise RuntimeError("disk")
    lines = _lines(capsys.readouterr().err)
    assert lines[0] == "export: build openvino-int8 ..."
    assert re.fullmatch(rf"export:   try 1: nncf.quantize: search agreement 97.0 % \(goal 98.9 %\), "
                        rf"certification 96.5 % \.\.\. {TIMED}", lines[1])
    assert re.fullmatch(rf"export:   pruned \.\.\. {TIMED}", lines[2])
    assert re.fullmatch(rf"export: build openvino-int8 \.\.\. {TIMED}", lines[3])
    assert re.fullmatch(rf"export: publish \.\.\. failed after {TIMED}", lines[4])


@pytest.fixture
def nncf_logger():
    """A logger set up the way NNCF sets up its own at import: INFO to its own stream handler
    (stdout there, a buffer here), not propagated."""
    existed = "nncf" in logging.Logger.manager.loggerDict
    lg = logging.getLogger("nncf")
    saved = lg.handlers[:], lg.propagate, lg.level
    own = io.StringIO()
    lg.handlers, lg.propagate = [logging.StreamHandler(own)], False
    lg.setLevel(logging.INFO)
    yield lg, own
    lg.handlers, lg.propagate = saved[0], saved[1]
    lg.setLevel(saved[2])
    if not existed:  # NNCF, imported later, must create its own logger class
        del logging.Logger.manager.loggerDict["nncf"]


def test_nncf_info_goes_to_the_log_file_and_only_warnings_to_the_console(nncf_logger, tmp_path, capsys):
    nncf, own = nncf_logger
    log = tmp_path / "export.log"
    with folded_logs(log):
        nncf.info("Statistics collection was started")
        nncf.warning("3 out of 60 were reverted back to the floating-point precision")
        logging.getLogger().info("Quantization parameters for tensor: not specified")  # ORT's quantizer
        rich.get_console().print("Applying Fast Bias correction 100% 33/33")  # NNCF's bars
    out, err = capsys.readouterr()
    assert own.getvalue() == out == ""
    assert err == "nncf: 3 out of 60 were reverted back to the floating-point precision\n"
    text = log.read_text()
    for s in ("INFO nncf: Statistics collection was started", "WARNING nncf: 3 out of 60",
              "INFO root: Quantization parameters", "Applying Fast Bias correction"):
        assert s in text
    nncf.info("after the export")  # NNCF's own handler is back
    assert own.getvalue() == "after the export\n"


def test_a_root_record_is_named_after_the_library_that_logged_it():
    def record(name: str, path: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.WARNING, path, 1, "m", None, None)

    assert library(record("root", "/v/lib/python3.11/site-packages/onnxruntime/quantization/qdq_quantizer.py")) == "onnxruntime"
    assert library(record("nncf.openvino.quantization", "/anywhere.py")) == "nncf"


def test_scorecam_draws_no_bar_of_its_own(capsys):
    torch = pytest.importorskip("torch")
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam import score_cam

    from edgekd.explain.cam import CamConfig, compute_cams
    from tests.explain_models import RegionNet, textures

    r = compute_cams(RegionNet(), torch.from_numpy(textures(2)), CamConfig("scorecam", scorecam_batch=2))
    assert r.maps.shape[0] == 2
    assert capsys.readouterr().err == ""  # ScoreCAM's tqdm: one bar per image otherwise
    assert score_cam.tqdm.__name__ == "tqdm"  # its module-level tqdm is put back
