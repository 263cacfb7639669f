import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression

from vaekit import Config, fit
from vaekit.cli import main
from vaekit.errors import VaekitError
from vaekit.evaluate import materialize
from vaekit.explore import conditional_samples, interpolate, style_transfer
from vaekit.models import ConditionalVAE
from vaekit.train import prepare


@pytest.fixture(scope="module")
def cvae(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "cvae"
    run = fit(Config(out=str(out)).override(['model.kind="cvae"', "model.latent_dim=4", "train.epochs=40", "train.tensorboard=false"]))
    _, data = prepare(run.config)
    return run, data


def test_samples_of_a_label_are_classified_as_that_label(cvae):
    run, data = cvae
    model = run.model.eval()
    assert isinstance(model, ConditionalVAE) and run.config.model.n_classes == 10
    x, y = data.train.x.float() / data.train.scale, data.train.y  # grey levels, not binarized
    clf = LogisticRegression(max_iter=3000).fit(x.flatten(1).numpy(), y.numpy())
    xt, yt = data.test.x.float() / data.test.scale, data.test.y
    assert clf.score(xt.flatten(1).numpy(), yt.numpy()) > 0.9  # the judge itself reads digits
    samples = conditional_samples(model, 50, torch.Generator().manual_seed(0))  # (10, 50, 1, 8, 8)
    predicted = clf.predict(samples.flatten(2).flatten(0, 1).numpy()).reshape(10, 50)
    per_label = (predicted == np.arange(10)[:, None]).mean(1)
    print("CVAE samples classified as their label:", np.round(per_label, 2))
    assert per_label.mean() >= 0.8


def test_style_transfer_keeps_z_and_changes_the_label(cvae):
    run, data = cvae
    model = run.model.eval()
    x, y = materialize(data.test, 5)
    grid = style_transfer(model, x, y)
    assert grid.shape == (5, 10, 1, 8, 8)
    for i in range(5):  # under its own label the transfer is the reconstruction
        assert torch.allclose(grid[i, y[i]], model.reconstruct(x[i:i + 1], y[i:i + 1])[0], atol=1e-6)
    path = interpolate(model, x[0], x[1], 5, y=y[:2], label=int(y[0]))  # the style path, decoded as the first's class
    assert torch.allclose(path[0], model.reconstruct(x[:1], y[:1])[0], atol=1e-6)
    with pytest.raises(VaekitError, match="needs the labels y"):
        model.encode(x)
    with pytest.raises(VaekitError, match="label 12: this conditional VAE knows labels 0 to 9"):
        model.decode(torch.zeros(1, 4), torch.tensor([12]))


def test_cvae_from_the_command_line(cvae, tmp_path, capsys):
    run, _ = cvae
    assert main(["sample", str(run.dir), "--label", "7", "--n", "6", "--out", str(tmp_path)]) == 0
    with Image.open(tmp_path / "samples.png") as im:
        assert im.size == ((6 * 10 + 2) * 8, (1 * 10 + 2) * 8)  # one row of six 7s
    assert main(["style", str(run.dir), "--n", "3", "--out", str(tmp_path)]) == 0
    with Image.open(tmp_path / "style.png") as im:
        assert im.size == ((11 * 10 + 2) * 8, (3 * 10 + 2) * 8)  # the input, then ten labels
    assert main(["eval", str(run.dir), "--k", "50", "--subset", "40", "--no-progress", "--no-baselines"]) == 0
    assert "log p(x), importance sampled K=50" in capsys.readouterr().out
    for command in (["reconstruct"], ["denoise"], ["impute", "--steps", "6", "--n", "20"], ["interpolate", "--label", "3"],
                    ["traverse", "--units", "0,1"], ["manifold", "--label", "4", "--n", "5"], ["embed", "--n", "100"]):
        assert main([command[0], str(run.dir), "--out", str(tmp_path), *command[1:]]) == 0, command
    assert main(["manifold", str(run.dir), "--out", str(tmp_path)]) == 2
    assert "drawn under one label: give --label" in capsys.readouterr().err
    assert main(["train", "--model", "cvae", "--data", str(tmp_path / "samples.png"), "--out", str(tmp_path / "x")]) == 2
