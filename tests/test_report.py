import base64
import io
import json
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from vaekit.cli import main
from vaekit.report import write_report


class Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.src, self.headings, self.pre, self._in = [], [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.src.append(dict(attrs)["src"])
        self._in = tag

    def handle_data(self, data):
        if self._in == "h2":
            self.headings.append(data)
        elif self._in == "pre":
            self.pre.append(data)

    def handle_endtag(self, tag):
        self._in = None


def _decode(src: str) -> Image.Image:
    assert src.startswith("data:image/png;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    img.load()
    return img


def test_training_writes_a_self_contained_report(digits_run):
    page = Images()
    page.feed((digits_run.dir / "report.html").read_text())
    assert page.headings == ["Training", "Reconstructions", "Samples", "Interpolations", "Traversals", "Learned manifold",
                             "Latent space", "Configuration"]
    images = [_decode(s) for s in page.src]
    assert len(images) == 7 and all(min(im.size) > 50 for im in images)
    config = json.loads(page.pre[-1])
    assert config["model"]["latent_dim"] == 4


def test_report_shows_the_evaluation_when_there_is_one(digits_run, tmp_path):
    assert main(["eval", str(digits_run.dir), "--k", "50", "--subset", "40", "--no-progress", "--no-baselines"]) == 0
    path = write_report(digits_run.dir, out=tmp_path)
    page = Images()
    page.feed(path.read_text())
    assert page.headings[0] == "Evaluation" and "log p(x), importance sampled K=50" in page.pre[0]
    assert all(_decode(s) for s in page.src)
    (digits_run.dir / "eval.json").unlink()


def _png(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def test_sample_grid_has_the_size_of_its_grid(digits_run, tmp_path, capsys):
    assert main(["sample", str(digits_run.dir), "--n", "16", "--out", str(tmp_path), "--device", "cpu"]) == 0
    assert "samples.png" in capsys.readouterr().out
    a = _png(tmp_path / "samples.png")
    up = 64 // 8  # 8×8 digits drawn 8× larger, 2-pixel gaps
    assert a.shape == ((4 * (8 + 2) + 2) * up, (4 * (8 + 2) + 2) * up)


@pytest.mark.parametrize("args, picture, rows, cols", [
    (["reconstruct", "--n", "5"], "reconstructions.png", 2, 5),
    (["denoise", "--n", "6"], "denoise.png", 3, 6),
    (["impute", "--mask", "left", "--steps", "10", "--n", "20"], "impute-left.png", 3, 8),
    (["interpolate", "--pair", "0", "3", "--steps", "7"], "interpolations.png", 2, 7),
    (["traverse", "--units", "0,2,3", "--steps", "5"], "traverse.png", 3, 5),
    (["manifold", "--n", "6", "--units", "1,2"], "manifold.png", 6, 6),
])
def test_explore_commands_draw_their_grids(digits_run, tmp_path, args, picture, rows, cols):
    assert main([args[0], str(digits_run.dir), "--out", str(tmp_path), *args[1:]]) == 0
    a = _png(tmp_path / picture)
    up = (32 if picture == "manifold.png" else 64) // 8
    assert a.shape == ((rows * 10 + 2) * up, (cols * 10 + 2) * up)


def test_interpolation_strip_ends_are_the_reconstructions(digits_run, tmp_path):
    assert main(["interpolate", str(digits_run.dir), "--out", str(tmp_path), "--pair", "1", "2", "--steps", "4"]) == 0
    assert main(["reconstruct", str(digits_run.dir), "--out", str(tmp_path), "--n", "3"]) == 0
    strip, recon = _png(tmp_path / "interpolations.png"), _png(tmp_path / "reconstructions.png")
    cell = 10 * 8  # one image with its gap, enlarged
    first, last = strip[16:16 + 64, 16:16 + 64], strip[16:16 + 64, 16 + 3 * cell:16 + 3 * cell + 64]
    assert np.array_equal(first, recon[16 + cell:16 + cell + 64, 16 + cell:16 + cell + 64])  # reconstruction of test image 1
    assert np.array_equal(last, recon[16 + cell:16 + cell + 64, 16 + 2 * cell:16 + 2 * cell + 64])


def test_impute_prints_its_error_against_mean_imputation(digits_run, tmp_path, capsys):
    assert main(["impute", str(digits_run.dir), "--out", str(tmp_path), "--method", "metropolis", "--steps", "10", "--n", "30"]) == 0
    out = capsys.readouterr().out
    assert "imputation MSE over missing pixels: model" in out and "mean imputation" in out and "acceptance rate" in out


def test_mask_from_a_file(digits_run, tmp_path, capsys):
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:6, 2:6] = 1
    np.save(tmp_path / "centre.npy", mask)
    assert main(["impute", str(digits_run.dir), "--out", str(tmp_path), "--mask", str(tmp_path / "centre.npy"), "--steps", "4", "--n", "10"]) == 0
    assert _png(tmp_path / "impute-centre.png").shape == ((3 * 10 + 2) * 8, (8 * 10 + 2) * 8)  # masked, filled, truth × 8
    np.save(tmp_path / "wrong.npy", np.zeros((5, 5)))
    assert main(["impute", str(digits_run.dir), "--out", str(tmp_path), "--mask", str(tmp_path / "wrong.npy")]) == 2
    assert "shape (5, 5), expected (8, 8)" in capsys.readouterr().err


def test_embed_compares_an_autoencoder_beside_the_vae(digits_run, tmp_path):
    ae = tmp_path / "ae"
    assert main(["train", "--out", str(ae), "--model", "ae", "--latent-dim", "4", "--epochs", "2", "--no-progress",
                 "--set", "train.tensorboard=false"]) == 0
    assert main(["embed", str(digits_run.dir), "--out", str(tmp_path), "--n", "300"]) == 0
    single = _png(tmp_path / "embedding.png").shape
    assert main(["embed", str(digits_run.dir), "--out", str(tmp_path), "--n", "300", "--compare", str(ae)]) == 0
    double = _png(tmp_path / "embedding.png").shape
    assert double[0] == single[0] and double[1] == 2 * single[1]


@pytest.mark.parametrize("args, message", [
    (["traverse", "--units", "0,9"], "latent unit(s) [9]: the model has units 0 to 3"),
    (["manifold", "--units", "0"], "the manifold needs exactly two units"),
    (["impute", "--mask", "nowhere"], "--mask nowhere: no such file, and not one of"),
    (["interpolate", "--pair", "0", "99999"], "--pair: test index 99999 is out of range"),
    (["traverse", "--units", "a,b"], "--units 'a,b': expected comma-separated unit numbers"),
])
def test_explore_bad_input_is_one_line(digits_run, tmp_path, capsys, args, message):
    assert main([args[0], str(digits_run.dir), "--out", str(tmp_path), *args[1:]]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_interpolate_between_two_image_files(digits_run, tmp_path):
    from vaekit.data.parts import materialize
    from vaekit.runs import prepare

    _, dataset = prepare(digits_run.config)
    x, _ = materialize(dataset.test, 2, "cpu", 0)
    for i in range(2):
        Image.fromarray((x[i, 0].numpy() * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
    assert main(["interpolate", str(digits_run.dir), "--out", str(tmp_path / "f"), "--files", str(tmp_path / "0.png"),
                 str(tmp_path / "1.png"), "--steps", "3"]) == 0
    assert main(["interpolate", str(digits_run.dir), "--out", str(tmp_path / "i"), "--pair", "0", "1", "--steps", "3"]) == 0
    from_files, from_indices = _png(tmp_path / "f" / "interpolations.png"), _png(tmp_path / "i" / "interpolations.png")
    assert from_files.shape == from_indices.shape
    assert np.abs(from_files.astype(int) - from_indices.astype(int)).max() <= 1  # the same images, up to rounding
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "big.png")  # colour, another size: converted to 1×8×8
    assert main(["interpolate", str(digits_run.dir), "--out", str(tmp_path / "b"), "--files", str(tmp_path / "big.png"),
                 str(tmp_path / "0.png")]) == 0
