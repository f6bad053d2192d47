"""One JSON object from user-facing text (a card, a `--model-kwargs` flag), or an error that says the fix."""

from __future__ import annotations

import json
from typing import Any

from edgekd.errors import EdgeKDError


def parse_object(text: str, source: str, fix: str) -> dict[str, Any]:
    """`text` as a JSON object; `source` names where it came from, `fix` what to do when it is not one."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise EdgeKDError(f"{source} is not valid JSON ({e}); fix: {fix}") from None
    if not isinstance(value, dict):
        raise EdgeKDError(f"{source} is not a JSON object; fix: {fix}")
    return value
