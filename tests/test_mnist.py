"""The acceptance figure of the foundation: 10 epochs of the 784-400-20 MLP VAE on dynamically binarized MNIST."""


def test_ten_epochs_reach_103_nats(mnist_run):
    run = mnist_run
    assert run.config.data.binarize == "dynamic" and run.config.model.hidden == (400,) and run.config.model.latent_dim == 20
    assert run.config.train.epochs == 10 and run.config.train.batch_size == 128 and run.config.train.lr == 1e-3
    print(f"MNIST test -ELBO after 10 epochs: {run.test['loss']:.2f} nats")
    assert run.test["loss"] <= 103.0
