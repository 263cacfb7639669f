import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression

from vaekit import Config, fit
from vaekit.cli import main
from vaekit.errors import VaekitError
from vaekit.data.parts import materialize
from vaekit.explore import conditional_samples, interpolate, style_transfer
from vaekit.models import ConditionalVAE
from vaekit.runs import prepare


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


def test_attribute_vectors_from_csv_columns_condition_the_decoder(tmp_path):
    g = np.random.default_rng(0)
    a = g.integers(0, 2, size=(1500, 2)).astype(float)  # two binary attributes
    u, v = np.array([3, 0, 0, 3, 0, 0]), np.array([0, 3, 0, 0, -3, 0])
    x = a[:, :1] * u + a[:, 1:] * v + 0.3 * g.standard_normal((1500, 6))  # the attributes shift x; the rest is noise
    lines = ["x0,x1,x2,x3,x4,x5,smile,glasses"] + [",".join(f"{c:.4f}" for c in row) for row in np.hstack([x, a])]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    sets = [f'data.name="{tmp_path / "t.csv"}"', 'data.condition_columns=["smile", "glasses"]', 'model.kind="cvae"', "model.latent_dim=2",
            "model.hidden=[32]", 'model.likelihood="gaussian"', "model.sigma=0.3", "train.epochs=300", "train.lr=0.003", "train.tensorboard=false"]
    run = fit(Config(out=str(tmp_path / "r")).override(sets))
    assert run.config.model.n_classes == 2 and tuple(run.config.model.input_shape) == (6,)
    model = run.model.eval()
    with torch.no_grad():
        z = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))
        for cond in ([0, 0], [1, 0], [0, 1], [1, 1]):  # E[x | a] = E_z[μ(z, a)] is the attributes' shift
            mean = model.decode(z, torch.tensor([cond], dtype=torch.float32)).mean.mean(0).numpy()
            assert np.allclose(mean, cond[0] * u + cond[1] * v, atol=0.3), (cond, mean)
    with pytest.raises(VaekitError, match="condition vectors of length 3: this conditional VAE takes 2"):
        model.decode(torch.zeros(1, 2), torch.zeros(1, 3))


def test_labels_and_attribute_columns_exclude_each_other():
    with pytest.raises(VaekitError, match="give labels or attribute columns, not both"):
        Config().override(['data.label_column="y"', 'data.condition_columns=["a"]'])
