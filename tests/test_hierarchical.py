import math

import torch

from vaekit import Config, build, fit
from vaekit.config import ModelConfig
from vaekit.evaluation import log_likelihood
from vaekit.data.parts import materialize
from vaekit.models import HierarchicalVAE
from vaekit.report import write_report
from vaekit.runs import prepare


def test_two_stochastic_layers_have_the_burda_shapes():
    cfg = ModelConfig(kind="hvae", input_shape=(1, 28, 28), likelihood="bernoulli", hidden=(200, 200), stochastic_layers=(100,),
                      upper_hidden=(100, 100), latent_dim=50, activation="tanh")
    model = build(cfg)
    assert isinstance(model, HierarchicalVAE) and model.latent_dims == (100, 50)
    linears = lambda net: [(m.in_features, m.out_features) for m in net.modules() if isinstance(m, torch.nn.Linear)]  # noqa: E731
    assert linears(model.encoder) == [(784, 200), (200, 200), (200, 200)]  # μ and log σ² of z1
    assert linears(model.ups[0]) == [(100, 100), (100, 100), (100, 100)]  # q(z2|z1): μ and log σ² of 50 units
    assert linears(model.downs[0]) == [(50, 100), (100, 100), (100, 200)]  # p(z1|z2)
    assert linears(model.decoder) == [(100, 200), (200, 200), (200, 784)]
    x = torch.bernoulli(torch.full((3, 1, 28, 28), 0.2))
    assert model.encode(x).mean.shape == (3, 50) and model.decode(torch.zeros(2, 50)).mean.shape == (2, 1, 28, 28)


def test_log_weight_is_the_sum_of_the_layer_densities():
    model = build(ModelConfig(kind="hvae", input_shape=(6,), likelihood="gaussian", hidden=(8,), stochastic_layers=(4,),
                              upper_hidden=(5,), latent_dim=2))
    x = torch.randn(3, 6)
    with torch.no_grad():
        got = model.log_weights(x, 2, torch.Generator().manual_seed(0))  # (2, 3)
        g = torch.Generator().manual_seed(0)
        N = torch.distributions.Normal
        mu1, lv1 = model.encoder(x).chunk(2, -1)
        z1 = mu1 + (0.5 * lv1).exp() * torch.randn((2, 3, 4), generator=g)
        mu2, lv2 = model.ups[0](z1).chunk(2, -1)
        z2 = mu2 + (0.5 * lv2).exp() * torch.randn((2, 3, 2), generator=g)
        pm, plv = model.downs[0](z2).chunk(2, -1)
        expected = (N(model.decoder(z1)[:, :, 0], 1.0).log_prob(x).sum(-1) + N(pm, (0.5 * plv).exp()).log_prob(z1).sum(-1)
                    + N(0.0, 1.0).log_prob(z2).sum(-1) - N(mu1, (0.5 * lv1).exp()).log_prob(z1).sum(-1)
                    - N(mu2, (0.5 * lv2).exp()).log_prob(z2).sum(-1))
    assert torch.allclose(got, expected, atol=1e-5)


def test_elbo_is_below_the_iwae_1000_estimate(tmp_path):
    sets = ['model.kind="hvae"', "model.hidden=[64]", "model.stochastic_layers=[16]", "model.upper_hidden=[32]", "model.latent_dim=4",
            "train.epochs=15", "train.tensorboard=false"]
    run = fit(Config(out=str(tmp_path / "h")).override(sets))
    _, data = prepare(run.config)
    x, _ = materialize(data.test, 100)
    model = run.model.eval()
    with torch.no_grad():
        rec, kl = model.elbo_terms(x, torch.Generator().manual_seed(0))
        elbo = -(rec + kl).mean()
        iwae = log_likelihood(model, x, 1000, torch.Generator().manual_seed(1)).mean()
    assert math.isfinite(elbo) and math.isfinite(iwae)
    print(f"hierarchical VAE on digits: ELBO {elbo:.2f}, IWAE-1000 {iwae:.2f}")
    assert elbo < iwae
    write_report(run.dir, run.model, run.data)  # and every explore picture of the run is drawn through it
    assert (tmp_path / "h" / "report.html").exists()
