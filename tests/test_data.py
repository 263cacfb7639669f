import gzip
import shutil
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit import DataConfig, VaekitError, load_dataset
from vaekit.data import fetch
from vaekit.data.parts import StreamPart
from vaekit.data.sources import SOURCES, hashes


def test_digits_is_embedded_and_split():
    ds = load_dataset(DataConfig())
    assert ds.shape == (1, 8, 8) and ds.kind == "image"
    assert len(ds.train) + len(ds.val) + len(ds.test) == 1797
    x, y = next(ds.train.batches(32))
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and x.max() == 1
    assert y.shape == (32,) and y.dtype == torch.int64


def test_mnist_50k_10k_10k_split_from_shared_data(shared_data):
    ds = load_dataset(DataConfig(name="mnist", data_dir=str(shared_data), download=False, val_size=10000))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (50000, 10000, 10000)
    assert ds.shape == (1, 28, 28)
    assert torch.bincount(ds.test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_frey_face_from_npz_and_mat(shared_data, tmp_path):
    ds = load_dataset(DataConfig(name="frey-face", data_dir=str(shared_data), download=False))
    assert ds.shape == (1, 28, 20) and len(ds.train) + len(ds.val) + len(ds.test) == 1965
    (tmp_path / "frey-face").mkdir()
    shutil.copy(shared_data / "frey-face" / "frey_rawface.mat", tmp_path / "frey-face")
    from_mat = load_dataset(DataConfig(name="frey-face", data_dir=str(tmp_path), download=False))
    assert torch.equal(from_mat.train.x, ds.train.x)


def test_download_verifies_checksums_over_http(shared_data, http_root, tmp_path):
    root, url = http_root
    shutil.copytree(shared_data / "mnist", root / "mnist")
    folder = fetch("mnist", tmp_path / "cache", mirrors=(url + "mnist/",))
    for rf in SOURCES["mnist"].files:
        assert hashes(folder / rf.name) == (rf.md5, rf.sha256)
    ds = load_dataset(DataConfig(name="mnist", data_dir=str(tmp_path / "cache"), download=False))
    assert len(ds.test) == 10000


def test_download_rejects_a_corrupted_file_and_leaves_nothing(shared_data, http_root, tmp_path):
    root, url = http_root
    shutil.copytree(shared_data / "frey-face", root / "frey-face")
    with open(root / "frey-face" / "frey_rawface.mat", "r+b") as f:
        f.seek(5000)
        f.write(b"\x00\x01\x02")
    with pytest.raises(VaekitError, match="checksum mismatch"):
        fetch("frey-face", tmp_path / "cache", mirrors=(url + "frey-face/",))
    assert list((tmp_path / "cache" / "frey-face").iterdir()) == []


def test_download_reports_an_unreachable_mirror(http_root, tmp_path):
    _, url = http_root
    with pytest.raises(VaekitError, match="could not download train-images-idx3-ubyte.gz: .*404"):
        fetch("mnist", tmp_path, mirrors=(url + "nothing-here/",))


def _mnist_copy(shared_data, tmp_path):
    shutil.copytree(shared_data / "mnist", tmp_path / "mnist")
    return tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"


def test_truncated_gzip_is_a_one_line_error(shared_data, tmp_path):
    f = _mnist_copy(shared_data, tmp_path)
    f.write_bytes(f.read_bytes()[:100_000])
    with pytest.raises(VaekitError, match="t10k-images-idx3-ubyte.gz: truncated or corrupt gzip"):
        load_dataset(DataConfig(name="mnist", data_dir=str(tmp_path), download=False))


def test_idx_with_wrong_magic_number(shared_data, tmp_path):
    f = _mnist_copy(shared_data, tmp_path)
    raw = bytearray(gzip.decompress(f.read_bytes()))
    raw[:4] = struct.pack(">I", 0x00000801)
    f.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(VaekitError, match=r"t10k-images-idx3-ubyte.gz: IDX magic number is 0x00000801, expected 0x00000803"):
        load_dataset(DataConfig(name="mnist", data_dir=str(tmp_path), download=False))


def test_npy_of_wrong_rank(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(10, dtype=np.float32))
    with pytest.raises(VaekitError, match=r"x.npy: array of shape \(10,\); expected rows"):
        load_dataset(DataConfig(name=str(tmp_path / "x.npy")))


def test_npy_and_npz_images(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (40, 6, 5, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    ds = load_dataset(DataConfig(name=str(tmp_path / "x.npy")))
    assert ds.shape == (3, 6, 5)
    np.savez(tmp_path / "x.npz", x=x[..., 0], y=np.arange(40))
    ds = load_dataset(DataConfig(name=str(tmp_path / "x.npz")))
    assert ds.shape == (1, 6, 5) and ds.train.y is not None


@pytest.mark.parametrize("cell, message", [("nan", "is not a finite number"), ("abc", "'abc' is not a number")])
def test_csv_with_bad_cells(tmp_path, cell, message):
    (tmp_path / "t.csv").write_text(f"a,b\n1,2\n3,{cell}\n")
    with pytest.raises(VaekitError, match=f"t.csv, line 3, column 'b': .*{message}"):
        load_dataset(DataConfig(name=str(tmp_path / "t.csv")))


def test_csv_table_with_labels(tmp_path):
    rows = "\n".join(f"{i * 0.5},{-i},{i % 3}" for i in range(30))
    (tmp_path / "t.csv").write_text("a,b,label\n" + rows + "\n")
    ds = load_dataset(DataConfig(name=str(tmp_path / "t.csv"), label_column="label"))
    assert ds.kind == "table" and ds.shape == (2,) and ds.likelihood == "gaussian"
    assert set(ds.train.y.tolist()) <= {0, 1, 2}


def test_bernoulli_needs_unit_range(tmp_path):
    np.save(tmp_path / "x.npy", np.full((20, 4), 3.0, dtype=np.float32))
    ds = load_dataset(DataConfig(name=str(tmp_path / "x.npy")))
    with pytest.raises(VaekitError, match=r"values span \[3, 3\], but a Bernoulli likelihood needs \[0, 1\]"):
        ds.check_unit_range()


def test_empty_data_set(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((0, 4), dtype=np.float32))
    with pytest.raises(VaekitError, match="empty data set"):
        load_dataset(DataConfig(name=str(tmp_path / "x.npy")))


def test_image_folder_with_class_subfolders(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    ds = load_dataset(DataConfig(name=str(tmp_path)))
    assert ds.shape == (3, 12, 10) and ds.classes == ["cat", "dog"]
    (tmp_path / "dog" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(VaekitError, match="bad.png: not a readable image"):
        load_dataset(DataConfig(name=str(tmp_path)))


def test_stream_reads_every_row_once_per_epoch_like_memory(tmp_path):
    x = np.arange(1000 * 6, dtype=np.float32).reshape(1000, 6) / 6000
    np.save(tmp_path / "x.npy", x)
    part = StreamPart(tmp_path / "x.npy", 100, 1000, 1.0, chunk_batches=4)
    rows = torch.cat([b for b, _ in part.batches(32, order=torch.Generator().manual_seed(0))])
    assert rows.shape == (900, 6)
    assert torch.equal(rows[rows[:, 0].argsort()], torch.from_numpy(x[100:]))
    assert not torch.equal(rows, torch.from_numpy(x[100:]))  # shuffled
    # resuming mid-epoch yields the same remaining batches
    again = torch.cat([b for b, _ in part.batches(32, order=torch.Generator().manual_seed(0), start=7)])
    assert torch.equal(again, rows[7 * 32:])


def test_stream_flags_bad_rows_with_their_index(tmp_path):
    x = np.full((50, 3), 0.5, dtype=np.float32)
    x[37, 1] = np.nan
    np.save(tmp_path / "x.npy", x)
    ds = load_dataset(DataConfig(name=str(tmp_path / "x.npy"), stream=True, val_size=5, test_size=5))
    with pytest.raises(VaekitError, match="x.npy, row 37: value nan is not finite"):
        list(ds.train.batches(8))


def test_static_binarization_is_fixed_and_dynamic_is_fresh():
    ds = load_dataset(DataConfig())
    ds.binarize("static")
    a = torch.cat([b for b, _ in ds.val.batches(100)])
    assert set(a.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(a, torch.cat([b for b, _ in ds.val.batches(100)]))
    dyn = load_dataset(DataConfig())
    dyn.binarize("dynamic")
    g = torch.Generator().manual_seed(0)
    b1, b2 = (torch.cat([b for b, _ in dyn.val.batches(100, noise=g)]) for _ in range(2))
    assert set(b1.unique().tolist()) == {0.0, 1.0} and not torch.equal(b1, b2)
