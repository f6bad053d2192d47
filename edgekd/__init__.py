"""edgekd: a large pretrained vision model -> a small, fast, verified medical image classifier."""

__version__ = "0.1.0"
