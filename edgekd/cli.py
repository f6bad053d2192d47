"""`edgekd` command: a thin dispatcher.

Each verb lives with its concept and exposes `main(argv) -> int`; imports are lazy so
`edgekd bench` on a clinic box never imports torch.
"""

from __future__ import annotations

import importlib
import sys

# verb -> (module, function, one-line help)
VERBS: dict[str, tuple[str, str, str]] = {
    "data": ("edgekd.data.cli", "main", "inspect a dataset folder (`edgekd data inspect PATH`)"),
    "select": ("edgekd.selection.cli", "main", "dual weight selection: teacher -> two students"),
    "train": ("edgekd.train", "main", "train a student (EMA self-distillation and baselines)"),
    "sweep": ("edgekd.sweep.cli", "main", "run a datasets x fractions x methods x draws sweep"),
    "export": ("edgekd.export.cli", "export_main", "export to ONNX / OpenVINO / TensorRT, then verify"),
    "verify": ("edgekd.export.cli", "verify_main", "check artifacts against the PyTorch model"),
    "bench": ("edgekd.export.cli", "bench_main", "time artifacts on this machine"),
    "predict": ("edgekd.export.predict", "main", "classify images with an exported artifact (no torch)"),
    "explain": ("edgekd.explain.cli", "main", "where the model looks: CAM gallery of S / S' / teacher, or of an artifact"),
}
# `explain --artifact` is the torch-free half, on the deployment side (edgekd.explain never imports edgekd.export)
ARTIFACT_EXPLAIN = ("edgekd.export.explain_runtime", "main")


def _usage() -> str:
    lines = ["usage: edgekd <verb> [options]", "", "verbs:"]
    lines += [f"  {name:<8} {help_}" for name, (_, _, help_) in VERBS.items()]
    lines += ["", "`edgekd <verb> --help` for the verb's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from edgekd import __version__

        print(__version__)
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"edgekd: unknown verb {verb!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, func, _ = VERBS[verb]
    if verb == "explain" and any(x == "--artifact" or x.startswith("--artifact=") for x in rest):
        module, func = ARTIFACT_EXPLAIN
    try:
        fn = getattr(importlib.import_module(module), func)
    except ModuleNotFoundError as e:
        missing = e.name or "?"
        if missing.startswith("edgekd"):
            raise
        extra = {"export": "export", "verify": "export", "bench": "runtime", "predict": "runtime",
                 "explain": "explain"}.get(verb, "train")
        print(
            f"edgekd {verb}: needs the Python package {missing!r}, which is not installed.\n"
            f"  fix: pip install 'edgekd[{extra}]'",
            file=sys.stderr,
        )
        return 2
    from edgekd.errors import run_verb

    return run_verb(verb, fn, rest)


if __name__ == "__main__":
    raise SystemExit(main())
