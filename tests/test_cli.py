import subprocess
import sys

from edgekd.cli import VERBS, main


def test_help_lists_every_verb(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in VERBS:
        assert verb in out


def test_unknown_verb_exits_2(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown verb" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "edgekd", "--version"], capture_output=True, text=True)
    assert r.returncode == 0
    assert r.stdout.strip() == __import__("edgekd").__version__
