"""Post-hoc explainers to compare the attention masks with: Grad-CAM on z, saliency, patch permutation.

Grad-CAM and saliency are written here (``backend="builtin"``, the default: one forward pass and
K backward passes per batch) and can also be computed through Captum (``backend="captum"``, or
``"auto"``: Captum when installed, ``pip install hpnet[explain]``), which runs a forward and a
backward pass of the whole network per attribute, about twice the time. The two agree to float
rounding; the test suite checks it. Patch permutation is always computed here: one forward pass
per patch gives every attribute, where Captum's FeaturePermutation would repeat it per attribute.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import HPNetError
from ..model import HPNet

EXPLAINERS = ("gradcam", "saliency", "permutation")
BACKENDS = ("builtin", "captum", "auto")


def upsample(maps: torch.Tensor, size: int) -> torch.Tensor:
    """(n, K, h, w) -> (n, K, size, size), bilinear, as the masks are shown over the image."""
    if maps.shape[-1] == size and maps.shape[-2] == size:
        return maps
    return F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)


def gradcam_maps(model: HPNet, x: torch.Tensor, backend: str = "builtin") -> torch.Tensor:
    """Grad-CAM on the features z for every attribute: (n, K, S, S), ReLU(sum_c mean_hw(dlogit/dz_c) z_c)."""
    if backend == "captum":
        return _captum_maps(model, x, "gradcam")
    with torch.no_grad():
        z0, context = model.encode(x)
    z = z0.detach().requires_grad_(True)
    logits = model.heads(z, context)[0]
    maps = []
    for k in range(logits.shape[1]):
        (g,) = torch.autograd.grad(logits[:, k].sum(), z, retain_graph=k + 1 < logits.shape[1])
        maps.append(F.relu((g.mean(dim=(2, 3), keepdim=True) * z0).sum(1)))
    return upsample(torch.stack(maps, 1).detach(), x.shape[-1])


def saliency_maps(model: HPNet, x: torch.Tensor, backend: str = "builtin") -> torch.Tensor:
    """Saliency (Simonyan et al.; paper Eq. 1): max over colours of |d logit_k / d x|, (n, K, S, S)."""
    if backend == "captum":
        return _captum_maps(model, x, "saliency")
    xg = x.detach().requires_grad_(True)
    logits = model(xg).logits
    maps = []
    for k in range(logits.shape[1]):
        (g,) = torch.autograd.grad(logits[:, k].sum(), xg, retain_graph=k + 1 < logits.shape[1])
        maps.append(g.abs().amax(1))
    return torch.stack(maps, 1).detach()


def _captum_maps(model: HPNet, x: torch.Tensor, method: str) -> torch.Tensor:
    """The same maps through Captum (LayerGradCam on the extractor output z; Saliency)."""
    from captum.attr import LayerAttribution, LayerGradCam, Saliency

    def forward(inp: torch.Tensor) -> torch.Tensor:
        return model(inp).logits

    maps = []
    for k in range(model.config.num_attributes):
        if method == "gradcam":
            a = LayerGradCam(forward, model.extractor).attribute(x, target=k, relu_attributions=True)
            maps.append(LayerAttribution.interpolate(a, (x.shape[-2], x.shape[-1]), "bilinear")[:, 0])
        else:
            maps.append(Saliency(forward).attribute(x, target=k, abs=True).amax(1))
    return torch.stack(maps, 1).detach()


@torch.no_grad()
def permutation_maps(model: HPNet, x: torch.Tensor, patch: int | None = None, seed: int = 0) -> torch.Tensor:
    """Patch permutation importance (Fisher et al. 2018, on image patches): (n, K, S, S).

    The image is cut into ``patch`` x ``patch`` squares (default S/8). For each square, every image
    gets that square from another image of the batch (a random cyclic permutation, no image keeps
    its own); the square's importance for attribute k of image i is |logit change|, spread over
    its pixels. One forward pass per square scores every attribute.
    """
    n, _, S, _ = x.shape
    if n < 2:
        raise HPNetError("patch permutation needs at least 2 images in a batch")
    patch = max(1, S // 8) if patch is None else int(patch)
    gen = torch.Generator().manual_seed(int(seed))
    base = model(x).logits
    out = torch.zeros(n, base.shape[1], S, S, device=x.device)
    for top in range(0, S, patch):
        for left in range(0, S, patch):
            perm = _cyclic_permutation(n, gen).to(x.device)
            xp = x.clone()
            xp[:, :, top:top + patch, left:left + patch] = x[perm][:, :, top:top + patch, left:left + patch]
            change = (model(xp).logits - base).abs()                      # (n, K)
            out[:, :, top:top + patch, left:left + patch] = change[:, :, None, None]
    return out


def _cyclic_permutation(n: int, gen: torch.Generator) -> torch.Tensor:
    """A random permutation that is one n-cycle, so that no image is paired with itself."""
    order = torch.randperm(n, generator=gen)
    perm = torch.empty(n, dtype=torch.long)
    perm[order] = order.roll(-1)
    return perm


def captum_available() -> bool:
    try:
        import captum.attr  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str) -> str:
    """"builtin" or "captum" for ``backend`` (one of BACKENDS); "auto" picks Captum when installed."""
    if backend not in BACKENDS:
        raise HPNetError(f"explainer backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "captum" and not captum_available():
        raise HPNetError("Captum is not installed: pip install 'hpnet[explain]', or use backend='builtin'")
    return ("captum" if captum_available() else "builtin") if backend == "auto" else backend
