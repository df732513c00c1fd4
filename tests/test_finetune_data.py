"""Data for fine-tuning: on-device random-resized-crop, Caltech-256 folders, fine-grained sets at 224 px,
and the normaliser statistics."""
import numpy as np
import pytest
import torch
from PIL import Image

import robustfront.data as D
from robustfront.data import DeviceLoader, load_dataset
from robustfront.models import IMAGENET_MEAN, IMAGENET_STD, parse_stats


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    d = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("ROBUSTFRONT_CACHE", str(d))
    return d


def ramps(n, size=32):
    """uint8 images: channel 0 = 8 * column, channel 1 = 8 * row, channel 2 = 0."""
    col = np.broadcast_to(8 * np.arange(size, dtype=np.uint8), (size, size))
    img = np.stack([col, col.T, np.zeros_like(col)])
    return np.repeat(img[None], n, 0).copy()


def first(loader):
    return next(iter(loader))


def test_rrc_of_the_whole_image_is_the_identity():
    x = np.random.default_rng(0).integers(0, 256, (16, 3, 12, 12), dtype=np.uint8)
    xb, yb = first(DeviceLoader(x, np.arange(16), 16, crop=0, flip=False, rrc=(1, 1), rrc_ratio=(1, 1)))
    assert torch.allclose(xb, torch.as_tensor(x)[yb].float() / 255, atol=1e-6)


def test_rrc_boxes_have_the_asked_area_and_aspect_ratio():
    # bilinear sampling reproduces a linear ramp: the slope of a crop's output along x is (box width / W)
    # times the input's slope, so slopes give each box's area fraction and aspect ratio
    n, size = 256, 32
    xb, _ = first(DeviceLoader(ramps(n, size), np.zeros(n), n, crop=0, flip=False, rrc=(0.3, 0.6),
                               rrc_ratio=(1.2, 2.0), seed=3))  # asymmetric: w, h not swapped
    step = 8 / 255
    mid = slice(8, 24)
    sx = (xb[:, 0, :, 1:] - xb[:, 0, :, :-1])[:, mid, mid].median(-1).values.median(-1).values / step
    sy = (xb[:, 1, 1:, :] - xb[:, 1, :-1, :])[:, mid, mid].median(-1).values.median(-1).values / step
    area, ratio = sx * sy, sx / sy
    whole = (area - 1).abs() < 1e-3  # no box of the 10 tries fitted: the whole image
    assert whole.float().mean() < 0.1
    assert ((area[~whole] > 0.3 - 1e-3) & (area[~whole] < 0.6 + 1e-3)).all()
    assert ((ratio[~whole] > 1.2 - 1e-3) & (ratio[~whole] < 2.0 + 1e-3)).all()
    assert ratio[~whole].log().std() > 0.1 and area.std() > 0.03  # drawn per image, not once per batch
    offsets = xb[:, 0, 16, 16]
    assert offsets.unique().numel() > n // 2  # each box at its own place
    assert xb.min() >= 0 and xb.max() <= 1


def test_rrc_then_flip_seeded_and_errors():
    x = ramps(64, 16)
    kw = dict(batch_size=64, crop=0, flip=True, rrc=(0.5, 1.0), seed=5)
    a, b = first(DeviceLoader(x, np.arange(64), **kw)), first(DeviceLoader(x, np.arange(64), **kw))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    flipped = (a[0][:, 0, 8, 1:] - a[0][:, 0, 8, :-1]).median(-1).values < 0  # ramp running right to left
    assert 0 < flipped.sum() < 64
    for kwargs, text in (({"rrc": (0.5, 1), "crop": 4}, "crop=4 is invalid; allowed: crop=0 when rrc is set"),
                         ({"rrc": (0, 1), "crop": 0}, "rrc=(0, 1) is invalid; allowed: two numbers 0 < lo <= hi <= 1"),
                         ({"rrc": (0.9, 0.5), "crop": 0}, "rrc=(0.9, 0.5) is invalid; allowed: two numbers"),
                         ({"rrc": (0.5, 1.5), "crop": 0}, "rrc=(0.5, 1.5) is invalid"),
                         ({"rrc": 0.5, "crop": 0}, "rrc=0.5 is invalid")):
        with pytest.raises(ValueError, match="^" + text.replace("(", r"\(").replace(")", r"\)")):
            DeviceLoader(x, np.arange(64), 8, **kwargs)
    xe, _ = first(DeviceLoader(x, np.arange(64), 64, train=False, crop=0, rrc=(0.1, 0.2)))
    assert torch.equal(xe, torch.as_tensor(x).float() / 255)  # evaluation batches are never cropped


def _img(value, size):
    return Image.new("RGB", (size[1], size[0]), (value, value, value))


def write_caltech(root):
    """256_ObjectCategories/<NNN>.<name>/: pixel value = a unique image id."""
    counts = {"001.ak47": 5, "002.american-flag": 5, "010.beer-mug": 1, "3.backpack": 10}
    ident = 0
    for folder, n in counts.items():
        (root / folder).mkdir(parents=True)
        for j in range(n):
            ident += 1
            _img(8 * ident, (6 + j % 3, 7)).save(root / folder / f"{j:04d}.png")
    (root / "002.american-flag" / "RENAME2").write_text("")  # a stray file in the real archive
    return root


def test_caltech_folders_get_a_fixed_seeded_split(tmp_path):
    write_caltech(tmp_path / "256_ObjectCategories")
    with pytest.raises(ValueError, match="resize"):
        load_dataset(tmp_path, val_size=0)
    a = load_dataset(tmp_path, resize=8, val_size=0, seed=0)
    assert a.classes == ["ak47", "american-flag", "backpack", "beer-mug"]  # numeric order: 1, 2, 3, 10
    assert np.bincount(a.y_test, minlength=4).tolist() == [1, 1, 2, 0]  # round(0.2 n), none from 1 image
    assert np.bincount(a.y_train, minlength=4).tolist() == [4, 4, 8, 1]
    ids_train, ids_test = set(a.x_train[:, 0, 4, 4] // 8), set(a.x_test[:, 0, 4, 4] // 8)
    assert not ids_train & ids_test and ids_train | ids_test == set(range(1, 22))
    b = load_dataset(tmp_path, resize=8, val_size=2, seed=1)  # another run seed: the same test set
    assert np.array_equal(a.x_test, b.x_test) and len(b.y_val) == 2


def test_cub_at_224_is_decoded_once_into_the_cache(tmp_path, monkeypatch):
    root = tmp_path / "CUB_200_2011"
    names = ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    rows = []
    for i in range(4):
        rel = f"{names[i % 2]}/img{i}.jpg"
        (root / "images" / names[i % 2]).mkdir(parents=True, exist_ok=True)
        _img(60 * (i % 2 + 1), (300 + 17 * i, 250)).save(root / "images" / rel, quality=95)
        rows.append((i + 1, rel, i % 2 + 1, int(i < 2)))
    (root / "images.txt").write_text("".join(f"{i} {r}\n" for i, r, _, _ in rows))
    (root / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, _, c, _ in rows))
    (root / "train_test_split.txt").write_text("".join(f"{i} {t}\n" for i, _, _, t in rows))
    (root / "classes.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
    ds = load_dataset(tmp_path, resize=224, val_size=0)
    assert ds.shape == (3, 224, 224) and ds.x_train.dtype == np.uint8 and len(ds.y_test) == 2
    assert abs(int(ds.x_test[1, 0, 112, 112]) - 120) <= 2

    def fail(*a, **k):
        raise AssertionError("decoded twice")
    monkeypatch.setattr(D, "decode_files", fail)
    again = load_dataset(tmp_path, resize=224, val_size=0)
    assert np.array_equal(again.x_train, ds.x_train)
    xb, _ = first(DeviceLoader(again.x_train, again.y_train, 2, crop=0, rrc=(0.08, 1.0)))
    assert xb.shape == (2, 3, 224, 224)


def test_normaliser_statistics_parse():
    assert parse_stats("imagenet", "input_mean") == list(IMAGENET_MEAN)
    assert parse_stats("ImageNet", "input_std") == list(IMAGENET_STD)
    assert parse_stats("0.485, 0.456,0.406") == [0.485, 0.456, 0.406]
    assert parse_stats(0.5) == [0.5] and parse_stats(None) is None
    with pytest.raises(ValueError,
                       match=r"^input_std='abc' is invalid; allowed: numbers .* imagenet, inception, cifar10$"):
        parse_stats("abc", "input_std")
