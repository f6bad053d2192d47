"""Weight selection (paper section 3.1): initialize small students from a large teacher.

Step 1 layer selection (`layers`), step 2 component mapping (`mapping`), step 3 element
selection (`indices`), and the dual S / S' selection with its coverage report (`dual`).
`edgekd select` (`cli`) wraps it for the command line.
"""

from edgekd.selection.dual import SelectionReport, TensorReport, plan_selection, select_dual, select_single
from edgekd.selection.indices import STRATEGIES, IndexBank, aux_indices, pick, uniform_indices
from edgekd.selection.layers import detect_layout, map_layers, parse_key
from edgekd.selection.mapping import plan_component

__all__ = [
    "STRATEGIES",
    "IndexBank",
    "SelectionReport",
    "TensorReport",
    "aux_indices",
    "detect_layout",
    "map_layers",
    "parse_key",
    "pick",
    "plan_component",
    "plan_selection",
    "select_dual",
    "select_single",
    "uniform_indices",
]
