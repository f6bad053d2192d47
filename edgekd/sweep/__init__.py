"""`edgekd sweep`: a grid of ordinary training runs and the paper-style table over them.

`plan` (cells and whether each is done), `launchers` (inproc, subprocess, accelerate),
`ray_launcher` (cells as Ray tasks), `table` (mean ± std over draws), `cli` (the verb).
"""

from edgekd.sweep.cli import main
from edgekd.sweep.plan import Cell, parse_params, plan
from edgekd.sweep.table import collect, to_markdown, write_table

__all__ = ["Cell", "collect", "main", "parse_params", "plan", "to_markdown", "write_table"]
