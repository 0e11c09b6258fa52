"""Synthetic faces: the built-in, procedurally drawn data set with CelebA attribute names.

Generative model
----------------
Each image is made in three steps, all from one ``numpy.random.Generator(PCG64(seed))``:

1. **Attributes** (:func:`.prior._sample_attributes`) are drawn from a hand-made prior with
   CelebA-like dependencies, in this order:

   - ``Male`` ~ 50%; ``Young`` ~ 55% (a little more often for women).
   - ``Bald``: mostly older men (45%), some young men (20%), rarely women (2%).
   - hair colour, one of Black / Blond / Brown / Gray / "other" (auburn, red), so the four labels
     are mutually exclusive; Gray is likely when not Young, Blond more likely for women.
     ``Bald`` implies no hair colour and no ``Bangs``. ``Bangs`` is more common for women.
   - facial hair only for men: a beard (``No_Beard`` = 0) for 70% of men; a beard is either full
     or a ``Goatee``; ``Mustache`` and ``Sideburns`` are more likely with a beard.
   - ``Wearing_Lipstick`` mostly women; ``Heavy_Makeup`` mostly with lipstick (strong positive
     link); ``Rosy_Cheeks`` more likely for women and with makeup; ``Arched_Eyebrows`` mostly women,
     more with makeup; ``Wearing_Earrings`` mostly women.
   - ``Smiling`` ~ 48%; ``Mouth_Slightly_Open`` likely when smiling; ``Narrow_Eyes`` more likely
     when smiling; ``Eyeglasses`` more likely when not Young; ``Bushy_Eyebrows`` and ``Big_Nose``
     more likely for men; ``Pale_Skin`` and ``Wearing_Hat`` independent.

2. **Scene** (:func:`.prior._sample_scene`): nuisance that does not depend on the attributes:
   face centre (jitter), scale, in-plane tilt, small shifts of eyes and mouth, skin tone, colours
   of hair, clothes, hat, lipstick, eye shadow, background colours with a gradient and a wave
   texture, global lighting (gain, directional gradient, colour tint, contrast) and pixel noise
   strength.

3. **Rendering** (:func:`.render._render`): a deterministic function of (attributes, scene).
   Every shape is a soft-edged distance field on the pixel grid in face coordinates (the face
   ellipse spans about [-0.45, 0.45] x [-0.6, 0.6]; y points down), painted in batches of images
   with numpy broadcasting. The feature table (:data:`.features.FEATURES`) lists what is drawn,
   back to front, each painter with the evidence region of each attribute it shows. What each
   attribute draws, and where (the same place :meth:`SyntheticFaces.region_masks` reports as
   ground truth):

   ============================  ===============================================================
   Smiling                       mouth curve with raised corners, wider mouth (mouth box)
   Mouth_Slightly_Open           dark open-mouth ellipse, teeth when also smiling (mouth box)
   Eyeglasses                    rings around both eyes, bridge and arms (eye band)
   Wearing_Hat                   crown and brim over the top of the head (top of head)
   Black/Blond/Brown/Gray_Hair   colour of the hair cap and hair behind the head (hair region)
   Bald                          no hair: skin up to the crown, a highlight (scalp, hair region)
   Bangs                         fringe over the forehead (forehead)
   Mustache                      band between nose and upper lip (below nose)
   No_Beard (0)                  full beard over jaw and chin, unless Goatee (lower face)
   Goatee                        beard on the chin only (chin)
   Sideburns                     hair strips at both temples down to the cheeks (face sides)
   Wearing_Lipstick              saturated lip colour instead of a skin-like one (lips)
   Heavy_Makeup                  eye shadow, eyeliner and light blush (eyes and cheeks)
   Rosy_Cheeks                   reddish blobs on both cheeks (cheeks)
   Pale_Skin                     light, desaturated skin tone (face, ears, neck)
   Male                          wider face, squarer jaw, wider neck, mostly short hair
                                 (head outline, hair beside the face, neck)
   Young                         no wrinkles; not Young draws forehead, smile and eye lines
                                 (forehead, cheeks beside the nose, outer eye corners)
   Narrow_Eyes                   eye height about halved (eyes)
   Bushy_Eyebrows                thick eyebrows (brows)
   Arched_Eyebrows               strongly curved eyebrows (brows)
   Big_Nose                      wider nose base and nostrils (nose)
   Wearing_Earrings              small metal dots below the ears (ear lobes)
   ============================  ===============================================================

Eyebrows, beards, mustaches and sideburns take a darker shade of the hair colour (the "other"
one for a bald head). Subtle attributes are small, low-contrast cues (wrinkles, narrow eyes, nose
size), and nuisance overlaps with cues on purpose: lighting gain and skin tone overlap with
Pale_Skin, makeup blush overlaps with Rosy_Cheeks, a hat hides the hair colour, a light beard
looks like stubble.
The per-image geometry (centre, scale, tilt, face size, eye and mouth positions) is kept, so the
evidence regions are computed on demand instead of stored.

Modules, each importing only those above it: ``prior`` (attributes, scene, geometry), ``draw``
(coordinates, shapes, colours, batches), ``features`` (the feature table: painters next to their
regions), ``render`` (images and region masks); this one holds the public API.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from hpnet.data.base import ArrayDataset
from hpnet.errors import HPNetError

from ..parts import PARTS
from .parts import PART_INFO, _part_info, _part_masks
from .prior import ATTRIBUTES, GEOMETRY, _geometry, _sample_attributes, _sample_scene
from .render import _region_masks, _render

__all__ = ["ATTRIBUTES", "GEOMETRY", "PARTS", "SyntheticFaces", "generate"]
# the tests also reach _sample_attributes, _sample_scene, _geometry, _render, _region_masks, _part_info
# and _part_masks here


class SyntheticFaces(ArrayDataset):
    """Synthetic faces in memory, with the per-image geometry behind the evidence regions and the
    face parts (``part_info``: the flags of :data:`.parts.PART_INFO`)."""

    parts = PARTS

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, attribute_names: list[str],
                 geometry: torch.Tensor, part_info: torch.Tensor):
        super().__init__(images, targets, attribute_names)
        for name, values, columns in (("geometry", geometry, GEOMETRY), ("part_info", part_info, PART_INFO)):
            if values.shape != (images.shape[0], len(columns)):
                raise ValueError(f"{name} shape {tuple(values.shape)} does not match "
                                 f"{images.shape[0]} images x {len(columns)} values")
        self.geometry = geometry.float()
        self.part_info = part_info.float()

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def subset(self, indices: torch.Tensor) -> "SyntheticFaces":
        return SyntheticFaces(self.images[indices], self.targets[indices], self.attribute_names,
                              self.geometry[indices], self.part_info[indices])

    def region_masks(self, indices: torch.Tensor | Sequence[int] | np.ndarray | None = None) -> torch.Tensor:
        """Where each attribute's evidence lies: bool ``(n, K, S, S)`` for the given images (all if None)."""
        geometry = self.geometry if indices is None else self.geometry[torch.as_tensor(indices).cpu()]
        geometry = geometry.reshape(-1, len(GEOMETRY)).numpy()
        return torch.from_numpy(_region_masks(geometry, self.attribute_names, self.image_size))

    def part_masks(self, indices: torch.Tensor | Sequence[int] | np.ndarray | None = None) -> torch.Tensor:
        """Where each face part of :data:`PARTS` lies: float32 ``(n, P, S, S)``, the share of each pixel it
        covers (the shares sum to 1), for the given images (all if None)."""
        pick = slice(None) if indices is None else torch.as_tensor(indices).cpu()
        geometry = self.geometry[pick].reshape(-1, len(GEOMETRY)).numpy()
        info = self.part_info[pick].reshape(-1, len(PART_INFO)).numpy()
        return torch.from_numpy(_part_masks(geometry, info, self.image_size))


def generate(n: int, image_size: int = 64, seed: int = 0,
             attributes: list[str] | None = None) -> SyntheticFaces:
    """Draw ``n`` synthetic faces of ``image_size`` x ``image_size`` pixels, deterministic from ``seed``.

    ``attributes`` picks the target columns, in the given order (default: all of :data:`ATTRIBUTES`).
    The images do not depend on that choice: every attribute is always sampled and drawn.
    """
    names = _check_arguments(n, image_size, attributes)
    n, image_size = int(n), int(image_size)
    rng = np.random.Generator(np.random.PCG64(seed))
    attrs = _sample_attributes(rng, n)
    scene = _sample_scene(rng, n)
    noise_seed = int(rng.integers(0, 2**63 - 1))
    images = _render(attrs, scene, image_size, noise_seed)
    targets = np.stack([attrs[name] for name in names], axis=1).astype(np.float32)
    geometry = _geometry(attrs, scene)
    return SyntheticFaces(torch.from_numpy(images), torch.from_numpy(targets), names,
                          torch.from_numpy(geometry), torch.from_numpy(_part_info(attrs, scene)))


def _check_arguments(n: int, image_size: int, attributes: list[str] | None) -> list[str]:
    if int(n) < 1:
        raise HPNetError(f"synthetic data needs n >= 1 images, got {n}")
    if int(image_size) < 8:
        raise HPNetError(f"synthetic image_size must be >= 8 pixels, got {image_size}")
    if attributes is None:
        return list(ATTRIBUTES)
    unknown = [a for a in attributes if a not in ATTRIBUTES]
    if unknown:
        raise HPNetError(f"--attributes: unknown synthetic attribute {unknown[0]!r}; valid: {', '.join(ATTRIBUTES)}")
    if len(set(attributes)) != len(attributes):
        raise HPNetError(f"synthetic attributes are listed twice: {', '.join(attributes)}")
    if not attributes:
        raise HPNetError("synthetic attributes list is empty")
    return list(attributes)
