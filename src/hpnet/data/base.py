"""The dataset contract every source (synthetic, CelebA, CSV, cache) follows.

An item is ``(image, target)``: ``image`` a ``uint8`` tensor of shape ``(3, S, S)``, ``target`` a
``float32`` tensor of shape ``(K,)`` with values 0 or 1. Images stay uint8 until the batch reaches
the device (the trainer divides by 255 there), which keeps memory and copies small.

Sources that hold every image in memory are :class:`ArrayDataset`: the trainer then slices batches
straight out of ``images`` without a DataLoader.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset


class MultiLabelDataset(Dataset):
    """Base class: subclasses set ``attribute_names`` and ``targets`` and implement ``image(i)``."""

    attribute_names: list[str]
    targets: torch.Tensor  # (N, K) float32 in {0, 1}

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def image(self, index: int) -> torch.Tensor:  # (3, S, S) uint8
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.image(index), self.targets[index]


class ArrayDataset(MultiLabelDataset):
    """Images held in memory as one uint8 tensor ``(N, 3, S, S)``."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, attribute_names: list[str]):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, S, S), got {images.dtype} {tuple(images.shape)}")
        if targets.shape != (images.shape[0], len(attribute_names)):
            raise ValueError(f"targets shape {tuple(targets.shape)} does not match "
                             f"{images.shape[0]} images x {len(attribute_names)} attributes")
        self.images = images
        self.targets = targets.float()
        self.attribute_names = list(attribute_names)

    def image(self, index: int) -> torch.Tensor:
        return self.images[index]

    def subset(self, indices: torch.Tensor) -> "ArrayDataset":
        return ArrayDataset(self.images[indices], self.targets[indices], self.attribute_names)
