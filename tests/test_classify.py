import numpy as np
import pytest
import torch

from vaekit import Config, fit
from vaekit.classify import compare_classifiers, features, labelled_subset
from vaekit.cli import main
from vaekit.errors import VaekitError
from vaekit.data.parts import materialize
from vaekit.runs import prepare


@pytest.fixture(scope="module")
def vae8(tmp_path_factory):
    run = fit(Config(out=str(tmp_path_factory.mktemp("runs") / "v8")).override(["model.latent_dim=8", "train.epochs=60",
                                                                                "train.tensorboard=false"]))
    return run


def test_encoder_initialized_classifier_beats_one_from_scratch_at_100_labels(vae8):
    _, data = prepare(vae8.config)
    x, y = materialize(data.train)
    xt, yt = materialize(data.test)
    r = compare_classifiers(vae8.model, x, y, xt, yt, labels=100, repeats=3)
    print("accuracy at 100 labels:", r["accuracy"])
    acc = r["accuracy"]
    assert acc["encoder-initialized"] > acc["from scratch"] + 0.02
    assert acc["encoder-initialized"] > 0.6 and set(acc) == {"encoder-initialized", "from scratch", "PCA + logistic regression"}


def test_labelled_subset_is_balanced():
    y = torch.arange(10).repeat(50)
    idx = labelled_subset(y, 23, torch.Generator().manual_seed(0))
    counts = torch.bincount(y[idx], minlength=10)
    assert len(idx) == 23 and len(set(idx.tolist())) == 23 and counts.max() - counts.min() <= 1
    with pytest.raises(VaekitError, match="fewer labelled examples than the 10 classes"):
        labelled_subset(y, 5, torch.Generator())


def test_features_are_the_posterior_means(vae8, tmp_path, capsys):
    _, data = prepare(vae8.config)
    x, y = materialize(data.test, None, "cpu", 0)
    assert main(["features", str(vae8.dir), "--out", str(tmp_path / "f.npz")]) == 0
    saved = np.load(tmp_path / "f.npz")
    assert np.allclose(saved["features"], vae8.model.encode(x).mean.detach().numpy(), atol=1e-6)
    assert np.array_equal(saved["labels"], y.numpy())
    assert torch.allclose(features(vae8.model, x), vae8.model.encode(x).mean, atol=1e-6)
    assert main(["features", str(vae8.dir), "--out", str(tmp_path / "f.npy"), "--split", "train"]) == 0
    assert np.load(tmp_path / "f.npy").shape == (len(data.train), 8)
    assert main(["features", str(vae8.dir), "--out", str(tmp_path / "f.txt")]) == 2
    assert "expected a .npy or .npz file name" in capsys.readouterr().err


def test_classify_prints_the_three_accuracies(vae8, capsys):
    assert main(["classify", str(vae8.dir), "--labels", "50", "--repeats", "1", "--steps", "50"]) == 0
    out = capsys.readouterr().out
    assert "encoder-initialized" in out and "from scratch" in out and "PCA + logistic regression" in out
