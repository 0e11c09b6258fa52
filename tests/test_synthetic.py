"""Synthetic faces: API contract, determinism, the attribute prior and the evidence regions."""
from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
import torch

import hpnet.data.synthetic as syn
from hpnet.data.base import ArrayDataset
from hpnet.data.synthetic import ATTRIBUTES, SyntheticFaces, features, generate, render
from hpnet.errors import HPNetError

HAIR = ["Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair"]


@pytest.fixture(scope="module")
def many() -> SyntheticFaces:
    """Enough tiny images for statistics on the prior (8 x 8 keeps it fast)."""
    return generate(3000, image_size=8, seed=11)


def column(ds: SyntheticFaces, name: str) -> np.ndarray:
    return ds.targets[:, ds.attribute_names.index(name)].numpy()


def corr(ds: SyntheticFaces, a: str, b: str) -> float:
    return float(np.corrcoef(column(ds, a), column(ds, b))[0, 1])


def test_attribute_names_are_celeba_names():
    required = {"Smiling", "Mouth_Slightly_Open", "Eyeglasses", "Wearing_Hat", "Black_Hair",
                "Blond_Hair", "Brown_Hair", "Gray_Hair", "Bald", "Bangs", "Mustache", "No_Beard",
                "Wearing_Lipstick", "Heavy_Makeup", "Rosy_Cheeks", "Pale_Skin", "Male", "Young",
                "Narrow_Eyes", "Bushy_Eyebrows"}
    assert required <= set(ATTRIBUTES)
    assert len(ATTRIBUTES) >= 20 and len(set(ATTRIBUTES)) == len(ATTRIBUTES)


def test_shapes_dtypes_and_dataset_contract():
    ds = generate(12, image_size=16, seed=0)
    assert isinstance(ds, ArrayDataset)
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (12, 3, 16, 16)
    assert ds.targets.dtype == torch.float32 and ds.targets.shape == (12, len(ATTRIBUTES))
    assert set(ds.targets.unique().tolist()) <= {0.0, 1.0}
    assert ds.attribute_names == ATTRIBUTES and len(ds) == 12
    image, target = ds[3]
    assert torch.equal(image, ds.images[3]) and torch.equal(target, ds.targets[3])
    assert ds.geometry.shape == (12, len(syn.GEOMETRY))


def test_default_size_is_64_and_any_size_works():
    assert generate(2, seed=0).images.shape == (2, 3, 64, 64)
    for size in (8, 13, 32):
        assert generate(3, image_size=size, seed=0).images.shape == (3, 3, size, size)


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = generate(20, 16, seed=5), generate(20, 16, seed=5), generate(20, 16, seed=6)
    assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)
    assert torch.equal(a.geometry, b.geometry)
    assert not torch.equal(a.images, c.images) and not torch.equal(a.targets, c.targets)


def test_images_are_not_flat():
    images = generate(10, 32, seed=1).images.float()
    assert images.std(dim=(1, 2, 3)).min() > 10  # a face on a background, not a blank canvas


def test_attribute_subset_keeps_given_order_and_same_images():
    full = generate(25, 16, seed=3)
    part = generate(25, 16, seed=3, attributes=["Smiling", "Male", "Bald"])
    assert part.attribute_names == ["Smiling", "Male", "Bald"]
    for k, name in enumerate(part.attribute_names):
        assert torch.equal(part.targets[:, k], full.targets[:, ATTRIBUTES.index(name)])
    assert torch.equal(part.images, full.images)
    assert part.region_masks([0]).shape == (1, 3, 16, 16)


def test_unknown_attribute_is_a_one_line_error_listing_valid_names():
    with pytest.raises(HPNetError) as info:
        generate(4, 16, attributes=["Smiling", "Smilling"])
    message = str(info.value)
    assert "Smilling" in message and "Smiling" in message and "Wearing_Hat" in message
    assert "\n" not in message


@pytest.mark.parametrize("kwargs", [dict(n=0), dict(n=-3), dict(n=4, image_size=7),
                                    dict(n=4, attributes=[])])
def test_bad_arguments_raise_hpnet_error(kwargs):
    with pytest.raises(HPNetError):
        generate(**kwargs)


def test_hair_colours_are_exclusive_and_bald_has_none(many):
    hair = np.stack([column(many, h) for h in HAIR], axis=1)
    assert hair.sum(1).max() <= 1
    bald = column(many, "Bald") > 0
    assert bald.any() and hair[bald].sum() == 0 and column(many, "Bangs")[bald].sum() == 0
    # facial hair and lipstick follow the prior's hard rules too
    female = column(many, "Male") == 0
    assert column(many, "Mustache")[female].sum() == 0 and column(many, "No_Beard")[female].min() == 1
    assert (column(many, "Goatee") <= 1 - column(many, "No_Beard")).all()


def test_dependencies_point_the_celeba_way(many):
    assert corr(many, "Heavy_Makeup", "Wearing_Lipstick") > 0.3
    assert corr(many, "Male", "Mustache") > 0.1
    assert corr(many, "Male", "No_Beard") < -0.1
    assert corr(many, "Smiling", "Mouth_Slightly_Open") > 0.1
    assert corr(many, "Male", "Wearing_Lipstick") < -0.1
    assert corr(many, "Male", "Heavy_Makeup") < -0.1
    young = column(many, "Young") > 0
    gray = column(many, "Gray_Hair")
    assert gray[~young].mean() > 2 * gray[young].mean()


def test_positive_rates_keep_the_majority_baseline_informative(many):
    rates = many.targets.mean(0).numpy()
    for name, rate in zip(ATTRIBUTES, rates):
        assert 0.1 <= rate <= 0.7, (name, rate)
    assert 0.62 <= np.maximum(rates, 1 - rates).mean() <= 0.78


def test_region_masks_shape_and_content():
    ds = generate(6, 32, seed=2)
    masks = ds.region_masks(torch.arange(6))
    assert masks.dtype == torch.bool and masks.shape == (6, len(ATTRIBUTES), 32, 32)
    area = masks.float().mean(dim=(2, 3))
    assert area.min() > 0, "every attribute has evidence somewhere in every image"
    assert area.max() < 0.75, "no region is the whole image"
    smile, black = masks[:, ATTRIBUTES.index("Smiling")], masks[:, ATTRIBUTES.index("Black_Hair")]
    iou = (smile & black).float().sum() / (smile | black).float().sum()
    assert iou < 0.1, "the mouth region is not the hair region"
    # the mouth lies below the eyes
    rows = torch.arange(32).float()[None, :, None]
    centre = lambda m: (m.float() * rows).sum(dim=(1, 2)) / m.float().sum(dim=(1, 2))  # noqa: E731
    assert (centre(smile) > centre(masks[:, ATTRIBUTES.index("Eyeglasses")])).all()
    assert torch.equal(ds.region_masks([1, 4]), masks[[1, 4]])
    assert torch.equal(ds.region_masks(), masks)


def test_subset_keeps_geometry_and_type():
    ds = generate(10, 16, seed=4, attributes=["Eyeglasses", "Wearing_Hat"])
    index = torch.tensor([7, 2, 5])
    sub = ds.subset(index)
    assert isinstance(sub, SyntheticFaces) and sub.attribute_names == ds.attribute_names
    assert torch.equal(sub.images, ds.images[index]) and torch.equal(sub.targets, ds.targets[index])
    assert torch.equal(sub.region_masks(torch.arange(3)), ds.region_masks(index))
    mask = torch.zeros(10, dtype=torch.bool)
    mask[[1, 3]] = True
    assert len(ds.subset(mask)) == 2


# toggling one attribute with everything else fixed changes the image where its region says;
# some attributes need a context (a goatee shows only without a full beard, ...)
_NO = np.zeros(1, bool)
_CONTEXT = {"Goatee": {"No_Beard": True}, "Bangs": {"Bald": False}, "Sideburns": {"Bald": False},
            **{h: {o: False for o in HAIR + ["Bald"] if o != h} for h in HAIR}}


@pytest.mark.parametrize("name", [a for a in ATTRIBUTES if a != "Male"])
def test_toggling_an_attribute_changes_pixels_inside_its_region(name):
    n, size = 24, 32
    rng = np.random.Generator(np.random.PCG64(7))
    attrs, scene = syn._sample_attributes(rng, n), syn._sample_scene(rng, n)
    attrs.update({k: np.full(n, v) for k, v in _CONTEXT.get(name, {}).items()})
    on = syn._render({**attrs, name: np.ones(n, bool)}, scene, size, noise_seed=1)
    off = syn._render({**attrs, name: np.zeros(n, bool)}, scene, size, noise_seed=1)
    diff = np.abs(on.astype(np.float32) - off.astype(np.float32)).mean(1)
    region = syn._region_masks(syn._geometry(attrs, scene), [name], size)[:, 0]
    assert diff[region].mean() > 0.5  # grey levels; Big_Nose is the subtlest cue
    assert diff[region].mean() > 5 * diff[~region].mean()
    changed = diff > 12
    # hair colour also tints eyebrows and beards, outside the hair region
    share = 0.75 if name in HAIR else 0.85
    assert changed[region].sum() >= share * changed.sum()


def test_male_changes_face_outline_and_hair():
    n, size = 24, 32
    rng = np.random.Generator(np.random.PCG64(8))
    attrs, scene = syn._sample_attributes(rng, n), syn._sample_scene(rng, n)
    on, off = {**attrs, "Male": np.ones(n, bool)}, {**attrs, "Male": np.zeros(n, bool)}
    diff = np.abs(syn._render(on, scene, size, 1).astype(np.float32)
                  - syn._render(off, scene, size, 1).astype(np.float32)).mean(1)
    region = (syn._region_masks(syn._geometry(on, scene), ["Male"], size)
              | syn._region_masks(syn._geometry(off, scene), ["Male"], size))[:, 0]
    assert diff[region].mean() > 5 * diff[~region].mean()


def test_feature_table_gives_every_attribute_one_region_and_draws_every_painter(monkeypatch):
    owners = [name for feature in features.FEATURES for name in feature.regions]
    assert sorted(owners) == sorted(ATTRIBUTES), "each attribute's region sits in exactly one feature"
    with pytest.raises(RuntimeError, match="Wearing_Hat"):
        features._attribute_regions(features.FEATURES[:-1])  # the import-time check
    # every painter written in features.py is in the table ...
    painters = [f for _, f in inspect.getmembers(features, inspect.isfunction)
                if f.__module__ == features.__name__ and "_View" in str(inspect.signature(f))
                and inspect.signature(f).return_annotation in (None, "None")]
    assert {f.__name__ for f in painters} == {feature.paint.__name__ for feature in features.FEATURES}
    # ... and rendering draws the table's painters in its order (on two images that have each one)
    drawn = []

    def spy(feature: features.Feature) -> features.Feature:
        def paint(view) -> None:
            drawn.append(feature.paint)
            feature.paint(view)
        return dataclasses.replace(feature, paint=paint)

    monkeypatch.setattr(render, "FEATURES", [spy(feature) for feature in features.FEATURES])
    rng = np.random.Generator(np.random.PCG64(0))
    scene = syn._sample_scene(rng, 2)
    attrs = {name: np.array([True, False]) for name in ATTRIBUTES}
    syn._render(attrs, scene, 16, noise_seed=0)
    assert drawn == [feature.paint for feature in features.FEATURES]
