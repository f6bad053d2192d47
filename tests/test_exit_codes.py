"""The exit-code table (edgekd/errors.py): 0 ok, 1 check failed, 2 user error, 3 internal error."""

from __future__ import annotations

import errno

import pytest

from edgekd.errors import CheckFailed, EdgeKDError, run_verb


def _raise(exc):
    def fn(argv):
        raise exc
    return fn


@pytest.mark.parametrize("exc, code, says", [
    (EdgeKDError("bad thing; fix: do this"), 2, "error: bad thing; fix: do this"),
    (CheckFailed("loss is NaN at step 3"), 1, "failed: loss is NaN at step 3"),
    (OSError(errno.ENOSPC, "No space left on device", "/runs/x/model.safetensors"), 2, "no space left on the device"),
    (ZeroDivisionError("boom"), 3, "internal error: ZeroDivisionError: boom"),
])
def test_each_exit_code_is_one_message_without_traceback(exc, code, says, capsys):
    assert run_verb("train", _raise(exc), []) == code
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_internal_error_keeps_the_traceback_in_a_log(capsys):
    run_verb("bench", _raise(RuntimeError("deep")), [])
    log = capsys.readouterr().err.split("the traceback is in ")[1].split(";")[0]
    assert "Traceback" in open(log).read() and "RuntimeError: deep" in open(log).read()


def test_a_verb_returning_a_code_keeps_it():
    assert run_verb("verify", lambda argv: 1, []) == 1 and run_verb("verify", lambda argv: None, []) == 0


def test_unknown_verb_is_a_user_error(capsys):
    from edgekd.cli import main

    assert main(["no-such-verb"]) == 2
