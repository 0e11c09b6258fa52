"""Other backbones beside the paper's: training and inference images/s at the same image size,
the same heads (fused attention, K attributes) and batches, measured alternately with the paper's
network (``"backbones"`` of the JSON line)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..model import HPNet, ModelConfig, count_macs, count_parameters
from .timing import Timing, alternate, log
from .workload import infer_fn, train_step_fn

if TYPE_CHECKING:
    from . import BenchConfig

BACKBONES = ("resnet18",)


def backbone_speeds(cfg: BenchConfig, paper: HPNet, x: torch.Tensor, y: torch.Tensor, xi: torch.Tensor,
                    device: torch.device) -> dict:
    """{backbone: images/s of training and inference, and their ratio to the paper network's}."""
    out = {}
    for name in BACKBONES:
        log(f"backbone {name} ...")
        torch.manual_seed(0)
        config = ModelConfig(list(paper.attribute_names), backbone=name, widths=cfg.resnet_widths)
        model = HPNet(config).to(device)
        train = [Timing(train_step_fn(paper, x, y), device), Timing(train_step_fn(model, x, y), device)]
        alternate(train, cfg.repeat)
        infer = [Timing(infer_fn(paper, xi), device), Timing(infer_fn(model, xi), device)]
        alternate(infer, cfg.repeat)
        out[name] = {"train_images_per_s": x.shape[0] / train[1].best, "infer_images_per_s": xi.shape[0] / infer[1].best,
                     "paper_train_images_per_s": x.shape[0] / train[0].best,
                     "paper_infer_images_per_s": xi.shape[0] / infer[0].best,
                     "train_vs_paper": train[0].best / train[1].best, "infer_vs_paper": infer[0].best / infer[1].best,
                     "widths": list(config.widths), "stem": config.stem, "channels": config.channels,
                     "feature_side": model.extractor.macs(cfg.image_size)[1],
                     "macs": count_macs(model, cfg.image_size), "params": count_parameters(model)}
        del model
    return out
