"""Channels-last input batches (TrainConfig.channels_last): the collate function and the loaders."""

from types import SimpleNamespace

import torch
from edgekd.config import TrainConfig
from edgekd.methods.base import Method
from edgekd.train import make_loaders, nhwc_collate


class Images(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int):
        return torch.randn(3, 8, 8), i % 2


def test_collate_gives_nhwc_images_and_plain_labels():
    x, y = nhwc_collate([Images()[0], Images()[1]])
    assert x.shape == (2, 3, 8, 8) and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert y.tolist() == [0, 1]


def test_every_loader_follows_the_decision():
    data = SimpleNamespace(train=Images(), val=Images(), test=Images(), train_labels=[i % 2 for i in range(8)])
    cfg = TrainConfig()
    cfg.optim.batch_size = cfg.optim.eval_batch_size = 4
    assert cfg.channels_last  # the default
    for nhwc in (True, False):
        cfg.channels_last = nhwc
        for loader in make_loaders(cfg, Method(cfg), data, 1):
            x = next(iter(loader))[0]
            assert x.is_contiguous(memory_format=torch.channels_last) == nhwc
