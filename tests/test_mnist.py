"""The acceptance figure of the foundation: 10 epochs of the 784-400-20 MLP VAE on dynamically binarized MNIST."""
import json

from vaekit import Config, fit


def test_ten_epochs_reach_103_nats(shared_data, tmp_path):
    sets = {"data.name": "mnist", "data.data_dir": str(shared_data), "data.download": False, "train.tensorboard": False}
    run = fit(Config(out=str(tmp_path / "mnist-vae")).override([f"{k}={json.dumps(v)}" for k, v in sets.items()]))
    assert run.config.data.binarize == "dynamic" and run.config.model.hidden == (400,) and run.config.model.latent_dim == 20
    assert run.config.train.epochs == 10 and run.config.train.batch_size == 128 and run.config.train.lr == 1e-3
    print(f"MNIST test -ELBO after 10 epochs: {run.test['loss']:.2f} nats")
    assert run.test["loss"] <= 103.0
