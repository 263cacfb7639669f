"""Bad input, as a careful user tried it: each case is a one-line error that names the culprit, exit status 2,
and nothing already written changed (the trained run's files are hashed before and after)."""
import gzip
import hashlib
import json
import shutil
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from vaekit.cli import main


def _hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _idx(path, a):
    magic = 0x803 if a.ndim == 3 else 0x801
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">" + "I" * (1 + a.ndim), magic, *a.shape) + a.astype(np.uint8).tobytes())


def _mnist_with_a_label_missing(tmp):
    folder = tmp / "data" / "mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    _idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (50, 28, 28)))
    _idx(folder / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 49))
    _idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (10, 28, 28)))
    _idx(folder / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 10))


def _file(name, content):
    def make(tmp):
        (tmp / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return make


def _npy(name, a, truncate=0):
    def make(tmp):
        np.save(tmp / name, a, allow_pickle=True)
        if truncate:
            data = (tmp / name).read_bytes()
            (tmp / name).write_bytes(data[:-truncate])
    return make


def _truncated_npz(tmp):
    np.savez(tmp / "t.npz", x=np.random.rand(100, 8).astype(np.float32))
    data = (tmp / "t.npz").read_bytes()
    (tmp / "t.npz").write_bytes(data[: len(data) // 2])


def _folder(classes, loose=False):
    def make(tmp):
        from PIL import Image

        root = tmp / "imgs"
        root.mkdir()
        for c, n in classes.items():
            (root / c).mkdir()
            for i in range(n):
                Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(root / c / f"{i}.png")
        if loose:
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "stray.png")
    return make


def _run_config(change):
    def make(tmp, run):
        copy = tmp / "run"
        shutil.copytree(run, copy)
        cfg = json.loads((copy / "config.json").read_text())
        change(cfg)
        (copy / "config.json").write_text(json.dumps(cfg))
    return make


def _nan_weights(tmp, run):
    copy = tmp / "run"
    shutil.copytree(run, copy)
    tensors = load_file(str(copy / "model.safetensors"))
    name = sorted(tensors)[0]
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(copy / "model.safetensors"))


def _other_shape_run(tmp, run):
    np.save(tmp / "small.npy", np.random.default_rng(0).random((40, 1, 4, 4)).astype(np.float32))
    assert main(["train", "--data", str(tmp / "small.npy"), "--out", str(tmp / "other"), "--epochs", "1", "--no-progress"]) == 0


def _set(cfg, section, key, value):
    cfg[section][key] = value


RUN = [  # commands over the trained run: (argv, what to prepare from the run, text the one line must hold)
    (["eval", "{run}", "--subset", "0"], None, "subset=0: expected a whole number from 1"),
    (["eval", "{run}", "--k", "0"], None, "k=0: expected a whole number from 1"),
    (["sample", "{run}", "--n", "-3"], None, "n=-3: expected a whole number from 1"),
    (["sample", "{run}", "--n", "0"], None, "n=0: expected a whole number from 1"),
    (["sample", "{run}", "--temperature", "nan"], None, "temperature=nan: expected a number greater than 0"),
    (["traverse", "{run}", "--index", "99999"], None, "--index 99999: out of range (the test split has"),
    (["explore", "{run}", "--port", "99999"], None, "port=99999: expected a whole number from 0 to 65535"),
    (["explore", "{run}", "--port", "-1"], None, "port=-1"),
    (["impute", "{run}", "--mask", "random", "--fraction", "2"], None, "fraction=2.0: expected a number greater than 0 and at most 1"),
    (["denoise", "{run}", "--noise", "-1"], None, "noise=-1.0: expected a number from 0"),
    (["embed", "{run}", "--compare", "{tmp}/other"], _other_shape_run, "its model takes inputs of shape [1, 4, 4]"),
    (["features", "{run}", "--out", "{tmp}/afile/x.npy"], lambda tmp, run: (tmp / "afile").write_text("x"), "afile/x.npy: cannot write"),
    (["eval", "{tmp}/run"], _run_config(lambda c: _set(c, "model", "input_shape", None)), "model.input_shape is null"),
    (["eval", "{tmp}/run"], _run_config(lambda c: _set(c, "model", "input_shape", [-1, 8, 8])), "model.input_shape: expected a value at least 1"),
    (["eval", "{tmp}/run"], _nan_weights, "holds NaN or infinite values; the training that wrote it diverged"),
    (["sample", "{tmp}/run"], _nan_weights, "holds NaN or infinite values"),
]

TRAIN = [  # vaekit train (into {tmp}/out): (argv, files to prepare, text the one line must hold)
    (["--set", "data.val_size=Infinity"], None, "data.val_size: expected a finite number, got inf"),
    (["--set", "train.seed=-1"], None, "train.seed: expected a value at least 0, got -1"),
    (["--set", "train.seed=9223372036854775808"], None, "train.seed: 9223372036854775808 is too large"),
    (["--set", "model.beta=Infinity"], None, "model.beta: expected a finite number"),
    (["--likelihood", "gaussian", "--set", "model.sigma=1e-300"], None, "model.sigma: expected a value at least 1e-06"),
    (["--config", "{tmp}/c.json"], _file("c.json", b'{"train": {"lr": 0.1\xff}}'), "c.json: the config file is not UTF-8 text"),
    (["--config", "{tmp}/c.json"], _file("c.json", '{"train": {"lr": 0.1, "lr": 0.2}}'), "the key 'lr' is given twice"),
    (["--out", ""], None, "out='': expected the path of a run directory"),
    (["--out", "{tmp}/afile"], _file("afile", "x"), "afile: a file, not a run directory"),
    (["--out", "{tmp}/afile/run"], _file("afile", "x"), "afile/run: cannot write the run directory (Not a directory)"),
    (["--data", "{tmp}/imgs", "--out", "{tmp}/imgs/run"], _folder({"a": 3, "b": 3}), "inside the data folder"),
    (["--latent-dim", "100000000"], None, "the model's weights (vae, model.latent_dim=100000000"),
    (["--hidden", "2000000000"], None, "model.hidden=[2000000000]) would take about"),
    (["--objective", "iwae", "--k", "100000000"], None, "100000000 sample(s) per example would take about"),
    (["--data", "mnist", "--data-dir", "{tmp}/data"], _mnist_with_a_label_missing, "train-labels-idx1-ubyte.gz: 49 labels for 50 images"),
    (["--data", "{tmp}/t.npz"], _truncated_npz, "t.npz: not a readable .npz file"),
    (["--data", "{tmp}/t.npy", "--set", "data.stream=true"], _npy("t.npy", np.zeros((100, 8), np.float32), 40), "t.npy: not a readable .npy file"),
    (["--data", "{tmp}/t.npy", "--set", "data.stream=true"], _npy("t.npy", np.array([{"a": 1}] * 20, dtype=object)), "t.npy: not a readable .npy file"),
    (["--data", "{tmp}/t.npy", "--set", "data.stream=true"], _file("t.npy", bytes(range(256)) * 8), "t.npy: not a readable .npy file"),
    (["--data", "{tmp}/t.npy", "--set", "data.stream=true"], _npy("t.npy", np.zeros((100, 8), np.complex64)), "dtype complex64 is not real numbers"),
    (["--data", "{tmp}/t.npy", "--set", "data.stream=true"], _npy("t.npy", np.zeros((100, 8), bool)), "dtype bool is not real numbers"),
    (["--data", "{tmp}/t.npy"], _npy("t.npy", np.zeros((100, 8), bool)), "dtype bool is not real numbers"),
    (["--data", "{tmp}/t.npy"], _npy("t.npy", np.zeros((100, 0), np.float32)), "rows of shape (0,) hold no values"),
    (["--data", "{tmp}/t.npy"], _npy("t.npy", np.array(["a"] * 20)), "is not real numbers"),
    (["--data", "{tmp}/t.csv", "--set", "data.label_column=\"y\""], _file("t.csv", "a,b,y\n1,2,0\n3,4,1.5\n5,6,1\n"),
     "line 3, column 'y': label 1.5 is not a class number"),
    (["--data", "{tmp}/t.csv"], _file("t.csv", "a,b,a\n1,2,3\n4,5,6\n"), "the column 'a' is named twice"),
    (["--data", "{tmp}/imgs"], _folder({"a": 3, "b": 0}), "imgs/b: a class folder with no images"),
    (["--data", "{tmp}/imgs"], _folder({"a": 3, "b": 3}, loose=True), "stray.png: an image beside the class folders (a, b)"),
    (["--data", "{tmp}/t.csv", "--likelihood", "gaussian", "--epochs", "1"],
     _file("t.csv", "a,b\n" + "".join(f"{1e30 * (i % 7)},{i}\n" for i in range(60))), "the training data reach 6e+30 in absolute value"),
    (["--data", "{tmp}/t.npy", "--likelihood", "gaussian"], _npy("t.npy", np.linspace(0, 999, 800, dtype=np.float32).reshape(100, 8)),
     "the training data reach 999 in absolute value; scale them"),
    (["--set", "model.init_std=1e30"], None, "loss became nan at step 1 (epoch 1); training stopped and no checkpoint had been "
                                             "written to {tmp}/out yet; the initial weights already gave it, before any update"),
]


def _one_line(capsys, code, message):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and ": error: " in lines[0], err
    assert message in lines[0], err


@pytest.mark.parametrize("argv, prepare, message", RUN)
def test_bad_input_on_a_run_is_one_line_and_changes_nothing(digits_run, tmp_path, capsys, argv, prepare, message):
    before = _hashes(digits_run.dir)
    if prepare is not None:
        prepare(tmp_path, digits_run.dir)
    capsys.readouterr()
    code = main([a.format(run=digits_run.dir, tmp=tmp_path) for a in argv] + ["--device", "cpu"])
    _one_line(capsys, code, message)
    assert _hashes(digits_run.dir) == before


@pytest.mark.parametrize("argv, prepare, message", TRAIN)
def test_bad_input_to_train_is_one_line_and_writes_no_run(tmp_path, capsys, argv, prepare, message):
    if prepare is not None:
        prepare(tmp_path)
    before = _hashes(tmp_path)
    args = [a.format(tmp=tmp_path) for a in argv]
    code = main(["train", "--no-progress", "--epochs", "2"] + (["--out", str(tmp_path / "out")] if "--out" not in args else []) + args)
    _one_line(capsys, code, message.format(tmp=tmp_path))
    assert not (tmp_path / "out" / "trainer.pt").exists()
    after = _hashes(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # the user's files are as they were


def test_interrupting_a_command_that_does_not_train_says_nothing_of_checkpoints(digits_run, capsys, monkeypatch):
    import vaekit.evaluation

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(vaekit.evaluation, "evaluate", interrupted)
    assert main(["eval", str(digits_run.dir), "--device", "cpu"]) == 130
    assert capsys.readouterr().err.strip() == "vaekit: interrupted"


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path):
    from vaekit.data.readers import read_csv

    (tmp_path / "t.csv").write_text("\ufeffy,a,b\n1,0.5,2\n0,1.5,3\n", encoding="utf-8")
    x, y = read_csv(tmp_path / "t.csv", "y")
    assert y.tolist() == [1, 0] and x.tolist() == [[0.5, 2.0], [1.5, 3.0]]


def test_ten_rows_train_and_the_report_leaves_out_only_what_cannot_be_drawn(tmp_path, capsys):
    np.save(tmp_path / "ten.npy", np.random.default_rng(0).random((10, 1, 8, 8)).astype(np.float32))
    assert main(["train", "--data", str(tmp_path / "ten.npy"), "--out", str(tmp_path / "run"), "--epochs", "1", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "latent space not drawn (an embedding needs at least 3 examples" in err
    page = (tmp_path / "run" / "report.html").read_text()
    assert "Reconstructions" in page and "Latent space" not in page


def test_a_full_disk_at_a_picture_is_one_line_and_keeps_the_run(digits_run, tmp_path, capsys, monkeypatch):
    from vaekit import files

    def full(event, path):
        if event == "written" and path.name == "samples.png":
            raise OSError(28, "No space left on device")

    before = _hashes(digits_run.dir)
    monkeypatch.setattr(files, "fault_hook", full)
    code = main(["sample", str(digits_run.dir), "--out", str(tmp_path / "pictures"), "--device", "cpu"])
    _one_line(capsys, code, "samples.png: cannot write (No space left on device)")
    assert _hashes(digits_run.dir) == before and not _hashes(tmp_path)  # no half-written picture either
