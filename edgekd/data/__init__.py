"""Dataset discovery, layouts, splits, subsets, manifests, image loading. Imports without torch.

The torch pieces (`edgekd.data.torchdata`, `edgekd.data.cache`'s Dataset use) are imported
only by the trainer, so the export runtime can use manifests and `load_image` on a torch-less box.
"""

from edgekd.data.archives import FASHION_MNIST_ROOT
from edgekd.data.config import DataConfig
from edgekd.data.index import DatasetIndex, DataWarning, Sample, Skipped
from edgekd.shared.images import load_image
from edgekd.data.layouts import LAYOUTS, discover
from edgekd.data.manifest import Manifest
from edgekd.data.prepare import PreparedData, prepare_data
from edgekd.data.split import SPLIT_MODES, Split, SplitRecord, cap_per_class, draw_subset, make_split

__all__ = [
    "DataConfig", "DatasetIndex", "DataWarning", "FASHION_MNIST_ROOT", "LAYOUTS", "Manifest", "PreparedData",
    "SPLIT_MODES", "Sample", "Skipped", "Split", "SplitRecord", "cap_per_class", "discover", "draw_subset",
    "load_image", "make_split", "prepare_data",
]
