"""Face parts of aligned real faces: CelebA's landmark file in its exact format, its CSV copy, landmark
columns of a CSV data set, the published mean positions without them, and the parts placed from them."""
import numpy as np
import pytest
import torch

from clihelp import one_line, run_cli
from fakes import make_fake_celeba, make_fake_csv_dataset, write_fake_landmarks
from hpnet.data import DataSpec, load_split
from hpnet.data.landmarks import MEAN_LANDMARKS, MEAN_SOURCE, LandmarkFaces, crop_normalise, read_landmarks
from hpnet.data.layout import LAYOUT_PARTS, layout_parts
from hpnet.data.parts import has_parts
from hpnet.errors import HPNetError

FILES = [f"{i + 1:06d}.jpg" for i in range(24)]


def points(n: int, seed: int = 0) -> np.ndarray:
    """(n, 10) landmarks near the mean positions, in pixels of the 178 x 218 frame."""
    rng = np.random.default_rng(seed)
    return (MEAN_LANDMARKS.reshape(1, 10) + rng.integers(-6, 7, size=(n, 10))).astype(int)


def load(base, split="train", size=32, **kw):
    spec = DataSpec(dataset="celeba", root=str(base), image_size=size, cache_dir="none", **kw)
    return load_split(spec, split, progress=False)


@pytest.mark.parametrize("layout", ["txt", "csv"])
def test_the_landmark_file_is_read_in_its_exact_format(tmp_path, layout):
    base = make_fake_celeba(tmp_path)
    marks = points(24)
    path = write_fake_landmarks(base, FILES, marks, layout)
    if layout == "txt":
        text = path.read_bytes()
        assert text.startswith(b"24\r\nlefteye_x lefteye_y") and b"\r\n000001.jpg " in text
    table = read_landmarks(path)
    assert list(table) == FILES and np.array_equal(table["000002.jpg"].ravel(), marks[1])
    data = load(base)
    assert isinstance(data, LandmarkFaces) and data.landmark_source == path.name
    expected = crop_normalise(marks[:16].reshape(16, 5, 2).astype(float), 178, 218)
    torch.testing.assert_close(data.landmarks, torch.from_numpy(expected).float())
    # in the crop: x / 178 and (y - 20) / 178 (the central 178 x 178 square of the 178 x 218 frame)
    assert data.landmarks[0, 0].tolist() == pytest.approx([marks[0, 0] / 178, (marks[0, 1] - 20) / 178])


def test_without_the_file_every_image_gets_the_published_mean_positions(tmp_path):
    data = load(make_fake_celeba(tmp_path))
    assert isinstance(data, LandmarkFaces) and data.landmark_source == MEAN_SOURCE
    mean = torch.tensor([[69, 111 - 20], [108, 111 - 20], [88, 136 - 20], [72, 152 - 20], [105, 152 - 20]]) / 178
    assert torch.allclose(data.landmarks, mean.float().expand(16, 5, 2))
    assert has_parts(data) and data.part_masks([0, 1]).shape == (2, len(LAYOUT_PARTS), 32, 32)


def test_the_held_out_valid_split_keeps_each_images_landmarks(tmp_path):
    base = make_fake_celeba(tmp_path, partitions=(24, 0, 0))
    marks = points(24, seed=3)
    write_fake_landmarks(base, FILES, marks)
    train, valid = load(base, "train"), load(base, "valid")
    assert len(train) + len(valid) == 24
    both = torch.cat([train.landmarks, valid.landmarks])
    expected = crop_normalise(marks.reshape(24, 5, 2).astype(float), 178, 218)
    torch.testing.assert_close(both, torch.from_numpy(expected).float())


@pytest.mark.parametrize("edit, message", [
    (lambda lines: ["x"] + lines[1:], "line 1: expected the image count"),
    (lambda lines: lines[:1] + ["lefteye_x lefteye_y"] + lines[2:], "line 2: expected the header"),
    (lambda lines: lines[:2] + [lines[2] + " 5"] + lines[3:], "line 3: expected an image name and 10 coordinates"),
    (lambda lines: lines[:2] + [lines[2].replace(" 69", " sixty")] + lines[3:], "not a number"),
    (lambda lines: lines[:3] + [lines[2]] + lines[4:], "line 4: image 000001.jpg is listed again"),
    (lambda lines: ["23"] + lines[1:-1], "no landmarks for image 000024.jpg"),
    (lambda lines: ["25"] + lines[1:], "the count line says 25 images but the file has 24 rows"),
])
def test_a_damaged_landmark_file_is_one_line_naming_it(tmp_path, capsys, edit, message):
    base = make_fake_celeba(tmp_path, partitions=(24, 0, 0))
    marks = MEAN_LANDMARKS.reshape(1, 10).repeat(24, 0)
    path = write_fake_landmarks(base, FILES, marks)
    lines = path.read_text().splitlines()
    path.write_text("\r\n".join(edit(lines)) + "\r\n")
    with pytest.raises(HPNetError, match=message) as error:
        load(base)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_csv_data_with_landmark_columns_has_parts_and_keeps_them_out_of_the_attributes(tmp_path):
    csv = make_fake_csv_dataset(tmp_path / "d")                      # 48 x 40 images: crop 40 x 40 at x 4
    header, *rows = csv.read_text().splitlines()
    cols = "lefteye_x,lefteye_y,righteye_x,righteye_y,nose_x,nose_y,leftmouth_x,leftmouth_y,rightmouth_x,rightmouth_y"
    marks = "14,16,34,16,24,24,16,30,32,30"
    csv.write_text("\n".join([f"{header},{cols}", *(f"{r},{marks}" for r in rows)]) + "\n")
    data = load_split(DataSpec(dataset="csv", root=str(csv), image_size=20, cache_dir="none"), "train", progress=False)
    assert data.attribute_names == ["Smiling", "Male", "Young"] and isinstance(data, LandmarkFaces)
    assert data.landmarks[0, 0].tolist() == pytest.approx([(14 - 4) / 40, 16 / 40])
    csv.write_text("\n".join([f"{header},lefteye_x", *(f"{r},3" for r in rows)]) + "\n")
    with pytest.raises(HPNetError, match="landmark columns lefteye_y, .* are missing"):
        load_split(DataSpec(dataset="csv", root=str(csv), image_size=20, cache_dir="none"), "train", progress=False)


def test_parts_follow_the_landmarks():
    """The eyes, nose and mouth parts hold their landmarks, wherever the face is; the shares sum to 1."""
    mean = crop_normalise(MEAN_LANDMARKS[None], 178, 218)[0]
    moved = mean + np.array([0.08, -0.05])                           # the same face, shifted
    tilted = mean.mean(0) + (mean - mean.mean(0)) @ np.array([[0.96, 0.28], [-0.28, 0.96]])
    size = 64
    for marks in (mean, moved, tilted):
        parts = layout_parts(marks[None], size)[0]
        torch.testing.assert_close(parts.sum(0), torch.ones(size, size))
        label = parts.argmax(0)
        for point, part in zip(marks, ("eyes", "eyes", "nose", "mouth", "mouth")):
            x, y = (np.asarray(point) * size).astype(int)
            assert LAYOUT_PARTS[int(label[y, x])] == part, (part, point)
        assert LAYOUT_PARTS[int(label[0, 0])] == "background"


def test_the_celeba_sample_layout_fits_its_faces(celeba_sample):
    """On the real sample (no landmark file: the mean positions), the eyes part is darker than the
    forehead and the cheeks: eyes, brows and lashes are dark on real faces."""
    data = load(celeba_sample, size=32, max_images=500)
    assert data.landmark_source == MEAN_SOURCE
    grey = data.images.float().mean(1)                                  # (n, S, S)
    parts = data.part_masks([0])[0]
    mean = {p: float((grey * parts[LAYOUT_PARTS.index(p)]).sum((1, 2)).mean() / parts[LAYOUT_PARTS.index(p)].sum())
            for p in ("eyes", "forehead", "cheeks", "nose")}
    assert mean["eyes"] < mean["forehead"] - 10 and mean["eyes"] < mean["cheeks"] - 10, mean


def test_dissect_refuses_data_without_parts_in_one_line(tmp_path, capsys):
    csv = make_fake_csv_dataset(tmp_path / "d")
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--dataset", "csv", "--root", csv, "--image-size", "16", "--backbone",
                           "strided", "--widths", "4,6", "--epochs", "1", "--quiet", "--no-eval",
                           "--cache-dir", tmp_path / "cache", "--out", run)
    assert code == 0, err
    one_line(*run_cli(capsys, "dissect", run, "--boot", "10", "--quiet")[::2], naming="face parts")
    assert not (run / "dissect.json").exists()


def test_hpnet_dissect_on_celeba_with_its_own_data_or_another_folder(tmp_path, capsys):
    import json
    first = make_fake_celeba(tmp_path / "a", attributes=["Smiling", "Mouth_Slightly_Open", "Male"])
    other = make_fake_celeba(tmp_path / "b", attributes=["Smiling", "Mouth_Slightly_Open", "Male"], seed=1)
    write_fake_landmarks(other, FILES, points(24))
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--dataset", "celeba", "--root", first.parent, "--image-size", "16",
                           "--backbone", "strided", "--widths", "4,6", "--epochs", "1", "--quiet", "--no-eval",
                           "--cache-dir", tmp_path / "cache", "--out", run)
    assert code == 0, err
    code, out, err = run_cli(capsys, "dissect", run, "--json", "--boot", "10")
    assert code == 0, err
    own = json.loads(out)
    assert own["split"] == "valid" and own["images"] == 4 and own["parts"] == list(LAYOUT_PARTS)
    assert own["part_source"] == MEAN_SOURCE and own["dataset"] == "celeba"
    assert own["fig4"]["attributes"] == ["Smiling", "Mouth_Slightly_Open"]
    code, out, err = run_cli(capsys, "dissect", run, "--json", "--boot", "10", "--root", other.parent,
                             "--cache-dir", tmp_path / "cache")
    assert code == 0, err
    assert json.loads(out)["part_source"] == "list_landmarks_align_celeba.txt"
