import json

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit import build
from vaekit.cli import main
from vaekit.config import Config
from vaekit.presets import PRESETS, preset
from vaekit.errors import VaekitError

SHAPES = {"mnist": (1, 28, 28), "frey-face": (1, 28, 20)}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_runs(name):
    cfg = Config().override(preset(name))
    shape = SHAPES[cfg.data.name]
    likelihood = cfg.model.likelihood if cfg.model.likelihood != "auto" else "bernoulli"
    model = build(Config.from_dict({**cfg.to_dict(), "model": {**cfg.to_dict()["model"], "input_shape": list(shape),
                                                                "likelihood": likelihood}}).model)
    x = torch.rand(4, *shape)
    out = model.loss(x)
    assert torch.isfinite(out.loss)
    assert PRESETS[name][0]  # documented with its source


def test_iwae_1layer_is_784_200_200_50():
    cfg = Config().override(preset("iwae-1layer"))
    model = build(Config.from_dict({**cfg.to_dict(), "model": {**cfg.to_dict()["model"], "input_shape": [1, 28, 28]}}).model)
    sizes = [(m.in_features, m.out_features) for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert sizes == [(784, 200), (200, 200), (200, 100)] and model.encoder.net[1].__class__.__name__ == "Tanh"
    assert cfg.train.batch_size == 20 and cfg.data.binarize == "dynamic"


def test_flags_override_a_preset_and_unknown_presets_are_refused(tmp_path, capsys):
    assert main(["train", "--preset", "aevb-mnist", "--data", "digits", "--latent-dim", "3", "--epochs", "1", "--out", str(tmp_path / "r"),
                 "--no-progress", "--set", "train.tensorboard=false"]) == 0
    cfg = Config.from_dict(json.loads((tmp_path / "r" / "config.json").read_text()))
    assert cfg.model.hidden == (500,) and cfg.model.activation == "tanh" and cfg.model.latent_dim == 3 and cfg.train.optimizer == "adagrad"
    assert main(["train", "--preset", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "preset 'nope': expected one of pytorch-example, aevb-mnist" in capsys.readouterr().err
    with pytest.raises(VaekitError):
        preset("nope")


def test_conv_preset_trains_on_mnist_and_on_a_folder_of_32x32_colour_images(shared_data, tmp_path):
    assert main(["train", "--preset", "conv-28", "--data-dir", str(shared_data), "--out", str(tmp_path / "mnist"), "--no-progress",
                 "--set", "data.download=false", "--set", "train.max_steps=30", "--set", "train.tensorboard=false"]) == 0
    folder = tmp_path / "faces"
    g = np.random.default_rng(0)
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        for i in range(30):
            img = np.zeros((32, 32, 3), np.uint8)
            img[..., 0 if cls == "a" else 2] = 200  # two colours of blobs
            img[g.integers(0, 24):, g.integers(0, 24):] //= 3
            Image.fromarray(img).save(folder / cls / f"{i}.png")
    assert main(["train", "--preset", "conv-28", "--data", str(folder), "--epochs", "2", "--out", str(tmp_path / "rgb"), "--no-progress",
                 "--set", "train.tensorboard=false"]) == 0
    cfg = Config.from_dict(json.loads((tmp_path / "rgb" / "config.json").read_text()))
    assert cfg.model.net == "conv" and tuple(cfg.model.input_shape) == (3, 32, 32)
    with Image.open(tmp_path / "rgb" / "samples.png") as im:
        assert im.mode == "RGB"
