import torch

from vaekit import Config, fit
from vaekit.distributions import DiagonalGaussian
from vaekit.evaluation import encoder_gradient_variance
from vaekit.data.parts import materialize
from vaekit.objectives import ELBO, ScoreFunction, score_function_surrogate
from vaekit.runs import prepare


def _mu_gradients(n: int, mu: float, sigma: float, score: bool, baseline: float = 0.0) -> torch.Tensor:
    """n one-sample estimates of ∇_μ E_{N(μ, σ²)}[z²], whose value is 2μ."""
    g = torch.Generator().manual_seed(0)
    m = torch.tensor([mu], requires_grad=True)
    out = []
    for _ in range(n):
        q = DiagonalGaussian(m, torch.tensor([2 * torch.log(torch.tensor(sigma))]))
        z = q.rsample(generator=g)
        f = z.pow(2).sum()
        loss = score_function_surrogate(f, q.log_prob(z.detach()), baseline) if score else f
        out.append(torch.autograd.grad(loss, m)[0])
    return torch.cat(out)


def test_both_estimators_are_unbiased_and_the_score_function_is_noisier():
    mu, sigma, n = 1.5, 0.7, 20000
    reparam, score = _mu_gradients(n, mu, sigma, False), _mu_gradients(n, mu, sigma, True)
    for g in (reparam, score):
        assert abs(g.mean() - 2 * mu) < 4 * g.std() / n**0.5  # within 4 standard errors of 2μ
    assert score.var() > 5 * reparam.var()  # the reparameterization estimate 2z has variance 4σ²; the score function far more
    centred = _mu_gradients(n, mu, sigma, True, baseline=mu**2 + sigma**2)  # b = E[z²]
    assert abs(centred.mean() - 2 * mu) < 4 * centred.std() / n**0.5 and centred.var() < score.var()


def test_vae_encoder_gradient_variance_and_score_function_training(tmp_path):
    run = fit(Config(out=str(tmp_path / "r")).override(["model.latent_dim=4", "train.epochs=3", "train.tensorboard=false"]))
    _, data = prepare(run.config)
    x, _ = materialize(data.test, 64)
    model = run.model.train()
    g = torch.Generator().manual_seed(0)
    v = {e: encoder_gradient_variance(model, x, e, 40, g) for e in ("reparameterization", "score-function", "score-function-baseline")}
    print({e: r["mean_variance"] for e, r in v.items()})
    assert v["score-function"]["mean_variance"] > 10 * v["reparameterization"]["mean_variance"]
    assert v["score-function-baseline"]["mean_variance"] < v["score-function"]["mean_variance"]
    # the loss it reports is still −ELBO, the same number
    a = ScoreFunction(baseline=True)(model, x, generator=torch.Generator().manual_seed(1)).loss
    b = ELBO()(model, x, generator=torch.Generator().manual_seed(1)).loss
    assert torch.allclose(a, b)
    sf = fit(Config(out=str(tmp_path / "sf")).override(["model.latent_dim=4", "train.epochs=3", "train.tensorboard=false",
                                                         'model.estimator="score-function-baseline"']))
    assert sf.history[-1]["train_loss"] < sf.history[0]["train_loss"]  # it learns, if slowly


def _linear_gaussian_vae(d=6, k=3, seed=0):
    """x = Wz + b + noise, z ~ N(0, I): a model whose posterior is Gaussian, with a linear encoder that is not yet it."""
    import vaekit
    from torch import nn

    torch.manual_seed(seed)
    return vaekit.VAE(nn.Linear(d, 2 * k), nn.Sequential(nn.Linear(k, d), nn.Unflatten(-1, (1, d))), likelihood="gaussian",
                      latent_dim=k, input_shape=(d,))


def _gradients(model, x, objective, n):
    g = torch.Generator().manual_seed(3)
    enc, dec = [], []
    for _ in range(n):
        model.zero_grad()
        objective(model, x, generator=g).loss.backward()
        enc.append(torch.cat([p.grad.flatten() for p in model.encoder.parameters()]))
        dec.append(torch.cat([p.grad.flatten() for p in model.decoder.parameters()]))
    return torch.stack(enc), torch.stack(dec)


def test_dreg_is_unbiased_for_the_iwae_gradient_with_less_encoder_variance_at_k50():
    from vaekit.objectives import IWAE

    model = _linear_gaussian_vae()
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    n = 1500
    enc_i, dec_i = _gradients(model, x, IWAE(50), n)
    enc_d, dec_d = _gradients(model, x, IWAE(50, estimator="dreg"), n)
    assert torch.allclose(dec_i, dec_d, atol=1e-5)  # the same draws: the decoder's gradient is the IWAE one exactly
    se = (enc_i.var(0) / n + enc_d.var(0) / n).sqrt()
    assert ((enc_i.mean(0) - enc_d.mean(0)).abs() <= 4 * se).all()  # the same expectation
    assert enc_d.var(0).sum() < 0.5 * enc_i.var(0).sum()  # and far less noise for the encoder
    # the loss it reports is the IWAE bound itself
    a = IWAE(50, estimator="dreg")(model, x, generator=torch.Generator().manual_seed(5)).loss
    b = IWAE(50)(model, x, generator=torch.Generator().manual_seed(5)).loss
    assert torch.allclose(a, b)
