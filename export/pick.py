"""The deployment pick: of the candidates an export built, the fastest that passed, on this machine.

Why: an export builds several candidates per runtime (FP32, FP16, BF16, INT8) and which is
fastest depends on the CPU (AMX-BF16, VNNI, AVX-512 change the ranking; see
benchmarks/results/export_cpu.md), so the person shipping needs one answer per box, with its
reasons. The rule (`choose`): a candidate is eligible when its marker says it passed verify
(the per-class gate is part of verify) so that it is published, when it was timed at batch 1
here, and when it is not a FLOAT FALLBACK INT8 (under half its compute in INT8 kernels: a float
model in an INT8 file). The fastest eligible one wins. `edgekd export` copies it to OUT/deploy/
(`publish.deploy`); `edgekd bench --pick OUT` re-times the verified candidates on a clinic box
and names that box's pick by the same rule (`repick`). Torch-free.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.errors import EdgeKDError
from edgekd.export.bench import BenchConfig, BenchResult, machine_info, time_artifact
from edgekd.export.int8_share import is_float_fallback
from edgekd.export.artifacts import artifact_files
from edgekd.export.publish import DEPLOY, MARKER_SUFFIX, Verification, deploy, read_verification
from edgekd.export.runner import RunnerConfig
from edgekd.export.runtimes import precision_label

if TYPE_CHECKING:
    from edgekd.export.artifacts import Artifact
    from edgekd.export.verify import VerifyResult


@dataclass(frozen=True)
class Candidate:
    """One built artifact as the pick sees it."""

    name: str  # e.g. openvino-int8
    path: str
    runtime: str  # onnxruntime | openvino | tensorrt
    precision: str  # fp32 | fp16 | bf16 | int8
    p50_ms: float | None  # batch-1 p50 on this machine; None = not timed
    verdict: str  # what its *.verified.json says: pass (verify and the per-class gate; published) | fail | unverified
    gated: bool = False  # its verify ran the per-class gate
    int8_share: float | None = None  # INT8 artifacts: share of the compute in INT8 kernels
    runs: str | None = None  # the float precision its runtime resolved (Runner.compute_precision)

    @property
    def label(self) -> str:
        return precision_label(self.precision, self.int8_share, self.runs)

    @property
    def excluded(self) -> str | None:
        """Why it cannot be the pick; None = eligible."""
        if self.verdict != "pass":
            return f"verify verdict: {self.verdict}"
        if self.int8_share is not None and is_float_fallback(self.int8_share):
            return f"FLOAT FALLBACK ({self.label}: a float model in an INT8 file)"
        if self.p50_ms is None:
            return "not timed on this machine"
        return None


@dataclass(frozen=True)
class Pick:
    name: str
    path: str
    runtime: str
    precision: str  # its label: int8 (94 %), fp16 (runs fp32), ...
    p50_ms: float  # batch-1, on `cpu`
    speedup_vs_eager: float | None  # None: PyTorch eager not timed here (`bench --pick` is torch-free)
    runner_up: str | None  # the next fastest eligible candidate
    speedup_vs_runner_up: float | None
    runtime_fp32: str | None  # its runtime's FP32 candidate, when timed and not the pick itself
    speedup_vs_fp32: float | None
    cpu: str
    why: str  # the sentence the report leads with
    passed_over: dict[str, str] = field(default_factory=dict)  # every other candidate -> why not it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose(candidates: list[Candidate], cpu: str, eager_p50_ms: float | None = None) -> Pick | None:
    """The fastest eligible candidate (see `Candidate.excluded`), or None when none is."""
    eligible = sorted((c for c in candidates if c.excluded is None), key=_p50)
    if not eligible:
        return None
    best, second = eligible[0], (eligible[1] if len(eligible) > 1 else None)
    p50, fp32 = _p50(best), _runtime_fp32(best, candidates)
    passed_over = {c.name: c.excluded or f"slower ({_p50(c):.2f} ms vs {p50:.2f} ms)" for c in candidates if c is not best}
    pick = Pick(best.name, best.path, best.runtime, best.label, p50, eager_p50_ms / p50 if eager_p50_ms else None,
                second.name if second else None, _p50(second) / p50 if second else None,
                fp32.name if fp32 else None, _p50(fp32) / p50 if fp32 else None, cpu, "", passed_over)
    return replace(pick, why=_sentence(pick, best))


def _p50(c: Candidate) -> float:
    return float(c.p50_ms)  # type: ignore[arg-type]  # only timed candidates are ranked or compared


def _sentence(p: Pick, best: Candidate) -> str:
    """e.g. "openvino-int8 [int8 (94 %)]: 3.7x PyTorch eager, 1.1x faster than the next passing
    candidate (onnx-fp32), 1.4x its runtime's FP32 (openvino-fp32) on this CPU (...), passes verify
    and the per-class gate"."""
    parts = [f"{p.speedup_vs_eager:.1f}x PyTorch eager"] if p.speedup_vs_eager else []
    parts.append(f"{p.speedup_vs_runner_up:.1f}x faster than the next passing candidate ({p.runner_up})"
                 if p.runner_up else "the only passing candidate")
    if p.runtime_fp32 and p.runtime_fp32 != p.runner_up:
        parts.append(f"{p.speedup_vs_fp32:.1f}x its runtime's FP32 ({p.runtime_fp32})")
    name = p.name if best.label == best.precision else f"{p.name} [{best.label}]"
    checks = "passes verify and the per-class gate" if best.gated else "passes verify"
    return f"{name}: {', '.join(parts)} on this CPU ({p.cpu}), {checks}"


def no_pick(candidates: list[Candidate]) -> str:
    """Why there is no pick, candidate by candidate."""
    why = "; ".join(f"{c.name}: {c.excluded}" for c in candidates) or "nothing was built"
    return f"no deployment pick ({why})"


def _runtime_fp32(c: Candidate, candidates: list[Candidate]) -> Candidate | None:
    return next((x for x in candidates if x.runtime == c.runtime and x.precision == "fp32" and x is not c
                 and x.p50_ms is not None), None)


def slower_int8(candidates: list[Candidate]) -> dict[str, str]:
    """INT8 candidate -> a note, for each one slower than its runtime's FP32 on this machine."""
    notes = {}
    for c in candidates:
        fp32 = _runtime_fp32(c, candidates) if c.precision == "int8" and c.p50_ms is not None else None
        if fp32 is not None and _p50(c) > _p50(fp32):
            notes[c.name] = (f"slower than {fp32.name} on this machine ({_p50(c):.2f} ms vs {_p50(fp32):.2f} ms "
                             "batch-1 p50): its INT8 kernels do not pay for the conversions around them here")
    return notes


def export_candidates(artifacts: list[Artifact], results: list[VerifyResult],
                      bench: dict[str, BenchResult]) -> list[Candidate]:
    """The candidates of an export, after publish (their markers are on disk)."""
    gated = {r.name: r.gate is not None for r in results}
    out = []
    for a in artifacts:
        if a.status != "ok" or not a.path:
            continue
        v, b = read_verification(a.path), bench.get(a.name)
        out.append(Candidate(a.name, a.path, a.runtime, a.precision, b.p50_ms if b else None,
                             v.verdict if v is not None else "no valid marker", gated.get(a.name, False),
                             a.int8_share.share if a.int8_share else None, b.runs if b else None))
    return out


# --- `edgekd bench --pick EXPORT_DIR` -------------------------------------------------------


@dataclass
class Repick:
    """This box's timing of an export's verified candidates, and its pick."""

    export_dir: Path
    machine: dict[str, Any]
    results: list[BenchResult]
    candidates: list[Candidate]
    not_timed: dict[str, str]  # artifact path -> why it was not timed here
    pick: Pick | None

    @property
    def headline(self) -> str:
        return self.pick.why if self.pick else no_pick(self.candidates)


def repick(export_dir: Path, cfg: BenchConfig, rcfg: RunnerConfig) -> Repick:
    """Re-time every candidate of `export_dir` whose marker says it passed, and pick by `choose`."""
    verified, not_timed = _verified(export_dir)
    results, candidates = [], []
    for path, v in verified:
        try:
            r = replace(time_artifact(path, cfg, rcfg), name=v.artifact or path.name)
        except (EdgeKDError, ImportError, RuntimeError) as e:  # e.g. a TensorRT engine on a box without its GPU
            not_timed[str(path)] = f"cannot run here: {e}"
            continue
        results.append(r)
        candidates.append(Candidate(r.name, str(path), r.runtime, r.precision, r.p50_ms, v.verdict,
                                    int8_share=v.int8_share, runs=r.runs))
    machine = machine_info()
    return Repick(export_dir, machine, results, candidates, not_timed, choose(candidates, machine["cpu_model"]))


def _verified(export_dir: Path) -> tuple[list[tuple[Path, Verification]], dict[str, str]]:
    """(artifact, marker) of each candidate that passed, and why the other markers do not count.
    OUT/<target>/ only: OUT/failed/ holds what failed, OUT/deploy/ a copy of the last pick."""
    markers = sorted(m for m in export_dir.glob(f"*/*{MARKER_SUFFIX}") if m.parent.name != DEPLOY)
    verified, skipped = [], {}
    for m in markers:
        path = Path(str(m)[: -len(MARKER_SUFFIX)])
        v = read_verification(path)
        if v is None:
            skipped[str(path)] = "its files changed since verify (or its marker is unreadable)"
        elif v.verdict != "pass":
            skipped[str(path)] = f"verdict {v.verdict}: {'; '.join(v.reasons) or 'exported with --no-verify'}"
        else:
            verified.append((path, v))
    if not verified:
        raise EdgeKDError(f"{export_dir} holds no verified candidate (no OUT/<target>/*{MARKER_SUFFIX} that passed"
                          f"{': ' + '; '.join(f'{k}: {w}' for k, w in skipped.items()) if skipped else ''}); fix: pass "
                          "the folder `edgekd export` wrote (its --out), copied whole with its markers")
    return verified, skipped


def write_repick(rp: Repick) -> tuple[Path, Path]:
    """EXPORT_DIR/bench-<hostname>.json and .md: a box's own record next to the exporting machine's report."""
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "host"
    stem = rp.export_dir / f"bench-{host}"
    js, md = stem.with_suffix(".json"), stem.with_suffix(".md")
    js.write_text(json.dumps({"machine": rp.machine, "results": [r.to_dict() for r in rp.results],
                              "pick": rp.pick.to_dict() if rp.pick else None, "headline": rp.headline,
                              "not_timed": rp.not_timed}, indent=2, default=str))
    md.write_text(_repick_markdown(rp, host))
    return js, md


def _repick_markdown(rp: Repick, host: str) -> str:
    m = rp.machine
    isa = ", ".join(k for k, v in m["isa"].items() if v) or "none"
    slow = slower_int8(rp.candidates)
    rows = [f"| {c.name} | {c.runtime} | {c.label} | {c.p50_ms:.2f} | "
            f"{'**pick**' if rp.pick and c.name == rp.pick.name else slow.get(c.name, '')} |" for c in rp.candidates]
    lines = [f"# edgekd bench --pick on {host}", "", f"**{rp.headline}**", "",
             f"- **machine**: {m['cpu_model']} ({m['affinity_cores']} cores; {isa}); runtimes: {m['runtimes']}",
             f"- **export**: `{rp.export_dir}`", "",
             "| artifact | runtime | precision | p50 ms | |", "|---|---|---|---|---|", *rows, ""]
    lines += [f"- not timed: `{p}`: {why}" for p, why in rp.not_timed.items()]
    return "\n".join(lines) + "\n"


def deploy_pick(out: Path, pick: Pick | None, card: Path, machine: dict[str, Any]) -> Path | None:
    """OUT/deploy/: the pick, its marker, the student's card and DEPLOY.md; removed when there is no pick."""
    if pick is None:
        return deploy(out, None, card, "")
    return deploy(out, Path(pick.path), card, deploy_markdown(pick, machine, card.name))


def deploy_markdown(pick: Pick, machine: dict[str, Any], card: str) -> str:
    """OUT/deploy/DEPLOY.md: what the pick is, where it was picked, how to run it and how to re-pick."""
    isa = ", ".join(k for k, v in machine["isa"].items() if v) or "none"
    art = Path(pick.path).name
    files = [f.name for f in artifact_files(Path(pick.path))] + [card]
    return "\n".join([
        f"# Deployment pick: {pick.name}", "", pick.why + ".", "",
        f"- **artifact**: `{art}` ({pick.runtime}, {pick.precision}), batch-1 p50 {pick.p50_ms:.2f} ms",
        f"- **files**: {', '.join(f'`{f}`' for f in files)}; `{art}{MARKER_SUFFIX}` records that it passed verify "
        f"and the digest of each file; `{card}` is the student's card (classes, preprocessing)",
        f"- **picked on**: {machine['cpu_model']} ({machine['affinity_cores']} cores; {isa}); runtimes: "
        f"{machine['runtimes']}", "",
        "## Run it", "", f"    edgekd predict {art} IMAGE_OR_FOLDER ...", "",
        "(`pip install edgekd[runtime]`: no torch.) An OpenVINO IR runs in the precision its metadata names; "
        "another OpenVINO consumer sets INFERENCE_PRECISION_HINT to match (bf16 for a bf16 IR, f32 for fp32/int8).", "",
        "## Re-pick on another box", "",
        "The fastest candidate depends on the CPU (its BF16, VNNI and AMX units). Copy the whole export folder "
        "(every OUT/<target>/ with its markers) to the box that will run it and there run", "",
        "    edgekd bench --pick EXPORT_DIR", "",
        "It re-times every verified candidate, names that box's pick by the same rule and writes "
        "EXPORT_DIR/bench-<hostname>.json and .md.", "",
    ])
