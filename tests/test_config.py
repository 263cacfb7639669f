import json

import pytest

from vaekit import Config, VaekitError, load_config


def test_json_round_trip_keeps_every_value():
    cfg = Config().override(['model.hidden=[500, 300]', 'train.lr=0.02', 'data.name="mnist"', 'train.grad_clip=5'])
    again = Config.from_dict(json.loads(cfg.to_json()))
    assert again == cfg
    assert again.model.hidden == (500, 300) and again.train.grad_clip == 5.0


def test_toml_and_json_files(tmp_path):
    (tmp_path / "c.toml").write_text('out = "runs/x"\n[model]\nlatent_dim = 2\nactivation = "tanh"\n')
    (tmp_path / "c.json").write_text('{"train": {"optimizer": "adagrad", "lr": 0.01}}')
    assert load_config(tmp_path / "c.toml").model.latent_dim == 2
    assert load_config(tmp_path / "c.json").train.optimizer == "adagrad"


@pytest.mark.parametrize("d, message", [
    ({"model": {"latnt_dim": 3}}, "config: unknown config key 'model.latnt_dim'"),
    ({"model": {"latent_dim": "3"}}, "model.latent_dim: expected an integer, got '3'"),
    ({"model": {"activation": "gelu"}}, "model.activation: expected one of"),
    ({"train": {"tensorboard": 1}}, "train.tensorboard: expected true or false"),
    ({"train": {"lr": "fast"}}, "train.lr: expected a finite number"),
    ({"modle": {}}, "unknown config key 'modle'"),
])
def test_bad_keys_and_types_are_one_line_errors(d, message):
    with pytest.raises(VaekitError, match=message.replace("(", r"\(")) as e:
        Config.from_dict(d)
    assert "\n" not in str(e.value)


def test_override_rejects_unknown_key_and_bad_syntax():
    with pytest.raises(VaekitError, match="unknown config key 'train.lrr'"):
        Config().override(["train.lrr=1"])
    with pytest.raises(VaekitError, match="expected section.key=value"):
        Config().override(["train.lr"])


def test_bad_config_file(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(VaekitError, match="bad.json: not valid JSON"):
        load_config(tmp_path / "bad.json")


@pytest.mark.parametrize("key, value", [("model.latent_dim", 0), ("train.lr", -1), ("train.batch_size", 0),
                                        ("model.hidden", [400, 0]), ("data.val_size", 0)])
def test_values_out_of_range(key, value):
    with pytest.raises(VaekitError, match=key.replace(".", r"\.") + ": expected a value"):
        Config().override([f"{key}={json.dumps(value)}"])
