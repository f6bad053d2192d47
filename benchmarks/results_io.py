"""Writing a benchmark's record: `NAME.json` (every number) and `NAME.md` (the table and the findings
computed from it) in one folder, and the markdown echoed to the console."""

from __future__ import annotations

import json
from pathlib import Path


def write_results(folder: Path, name: str, result: dict, md: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (folder / f"{name}.md").write_text(md)
    print(md)
