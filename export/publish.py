"""Nothing unverified at a final path: artifacts are built in `OUT/.staging/`, and only after
verify are they moved into place, each with a `*.verified.json` beside it.

Why: an INT8 accuracy-control search writes candidates that fail; a killed export used to leave
one at `OUT/onnx/model.int8.onnx`, and `edgekd predict` used it. Now a final path holds either
the previous export's verified artifact or the new one, never a candidate. An artifact that
failed verify goes to `OUT/failed/` with its reasons; `predict` and `bench` read the marker and
refuse anything that is not marked verified unless `--allow-unverified`. `OUT/deploy/` holds a
copy of the deployment pick (`edgekd.export.pick`) with its marker and the student's card. Torch-free.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgekd.errors import EdgeKDError
from edgekd.export.artifacts import Artifact, artifact_files, sha256_file

STAGING = ".staging"
FAILED = "failed"
DEPLOY = "deploy"
MARKER_SUFFIX = ".verified.json"
VERDICTS = ("pass", "fail", "unverified")  # unverified = exported with --no-verify


@dataclass
class Verification:
    """What the marker beside an artifact says, checked against the files it names."""

    verdict: str  # pass | fail | unverified
    artifact: str = ""
    sha256: dict[str, str] = field(default_factory=dict)  # file name -> digest, for every file of the artifact
    reasons: list[str] = field(default_factory=list)
    weights_sha256: str = ""  # the student it was verified against
    int8_share: float | None = None  # INT8: its compute share in INT8 kernels, measured at export (the pick's rule)

    def save(self, path: Path) -> None:
        marker_path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")


def marker_path(artifact: Path) -> Path:
    return Path(str(artifact) + MARKER_SUFFIX)


def read_verification(artifact: str | Path) -> Verification | None:
    """The artifact's marker if it matches the files on disk; None when there is none or the files changed."""
    artifact = Path(artifact)
    marker = marker_path(artifact)
    if not marker.is_file():
        return None
    try:
        v = Verification(**json.loads(marker.read_text()))
    except (ValueError, TypeError):
        return None
    files = {f.name: f for f in artifact_files(artifact)}
    if set(v.sha256) != set(files) or any(sha256_file(files[n]) != d for n, d in v.sha256.items()):
        return None
    return v


def require_verified(artifact: str | Path, allow_unverified: bool) -> Verification | None:
    """Refuse an artifact that did not pass verify (or whose files changed since), unless allowed."""
    v = read_verification(artifact)
    if v is not None and v.verdict == "pass" or allow_unverified:
        return v
    why = ("it FAILED verify: " + "; ".join(v.reasons)) if v is not None and v.verdict == "fail" else (
        "it was exported with --no-verify" if v is not None else
        f"it has no valid {MARKER_SUFFIX} beside it (not verified, or changed since)")
    raise EdgeKDError(f"{artifact} is not a verified artifact: {why}; fix: use an artifact `edgekd export` verified "
                      f"(copy it with its {MARKER_SUFFIX}), or pass --allow-unverified to use it anyway")


def staging_dir(out: Path) -> Path:
    """A fresh staging folder inside OUT (same file system, so publishing is a rename)."""
    stage = out / STAGING
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    return stage


def refuse_other_run(out: Path, weights_sha256: str, overwrite: bool) -> None:
    """`--out` holding another student's export is refused (mixing two runs' artifacts) unless --overwrite."""
    report = out / "report.json"
    if overwrite or not report.is_file():
        return
    try:
        old = json.loads(report.read_text()).get("weights_sha256", "")
    except ValueError:
        old = ""
    if old and weights_sha256 and old != weights_sha256:
        raise EdgeKDError(f"{out} holds the export of another student (weights {old[:12]}..., this run "
                          f"{weights_sha256[:12]}...); fix: pass a new --out, or --overwrite to replace it")


def publish(out: Path, stage: Path, artifacts: list[Artifact], verdicts: dict[str, tuple[str, list[str]]],
            weights_sha256: str) -> None:
    """Move each built artifact from the staging folder to its final place (failed ones under
    OUT/failed/) with its marker, then replace the previous export's artifact folders and drop
    the staging (the search's candidates and intermediates go with it)."""
    final = out / f"{STAGING}.publish"
    shutil.rmtree(final, ignore_errors=True)
    final.mkdir()
    for a in artifacts:
        a.shipped = [_move(Path(f), stage, final) for f in a.shipped if Path(f).exists()]
        if a.status != "ok":
            continue
        verdict, reasons = verdicts.get(a.name, ("unverified", []))
        base = final / FAILED if verdict == "fail" else final
        a.path = _move(Path(a.path), stage, base)
        a.latency_path = _move(Path(a.latency_path), stage, base) if a.latency_path else ""
        files = artifact_files(Path(a.path))
        Verification(verdict, a.name, {f.name: sha256_file(f) for f in files}, reasons, weights_sha256,
                     a.int8_share.share if a.int8_share else None).save(Path(a.path))
    for sub in {p.name for p in final.iterdir()} | {FAILED}:  # the previous export's artifacts of these kinds
        shutil.rmtree(out / sub, ignore_errors=True)
    for child in final.iterdir():
        os.replace(child, out / child.name)
    for a in artifacts:  # the recorded paths now point into OUT
        a.path, a.latency_path = (x.replace(str(final), str(out)) for x in (a.path, a.latency_path))
        a.shipped = [x.replace(str(final), str(out)) for x in a.shipped]
    shutil.rmtree(final, ignore_errors=True)
    shutil.rmtree(stage, ignore_errors=True)


def deploy(out: Path, artifact: Path | None, card: Path, readme: str) -> Path | None:
    """Copy a published, verified artifact (all its files and its marker) and the student's card
    into OUT/deploy/ with README `readme` (DEPLOY.md); returns the copy's path. With no artifact
    the folder is removed: a previous export's pick must not outlive the export that replaced it."""
    dest = out / DEPLOY
    shutil.rmtree(dest, ignore_errors=True)
    if artifact is None:
        return None
    if read_verification(artifact) is None:
        raise RuntimeError(f"{artifact} has no valid marker: only a published, verified artifact is deployed")
    dest.mkdir()
    for f in [*artifact_files(artifact), marker_path(artifact), card]:
        shutil.copy2(f, dest / f.name)
    (dest / "DEPLOY.md").write_text(readme)
    return dest / artifact.name


def _move(path: Path, stage: Path, base: Path) -> str:
    """Move an artifact's files from `stage/SUB/...` to `base/SUB/...`; returns the new path."""
    if not path.is_relative_to(stage):
        raise RuntimeError(f"{path} was built outside the staging folder {stage}")
    dest = base / path.relative_to(stage)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for f in artifact_files(path):
        if f.exists():
            os.replace(f, dest.parent / f.name)
    return str(dest)
