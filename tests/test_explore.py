import math

import pytest
import torch
from scipy.stats import norm

from vaekit import explore
from vaekit.errors import VaekitError
from vaekit.data.parts import materialize
from vaekit.runs import prepare


@pytest.fixture(scope="module")
def digits(digits_run):
    _, dataset = prepare(digits_run.config)
    x, y = materialize(dataset.test, 200, "cpu", 0)
    return digits_run.model.eval(), dataset, x, y


def test_prior_samples_shape_and_temperature(digits):
    model = digits[0]
    x = explore.prior_samples(model, 6, torch.Generator().manual_seed(1))
    assert x.shape == (6, 1, 8, 8) and ((x >= 0) & (x <= 1)).all()
    cold = explore.prior_samples(model, 3, temperature=0.0)  # every z is the prior mode
    assert torch.allclose(cold, model.decode(torch.zeros(1, 4)).mean.expand(3, 1, 8, 8))


def test_interpolation_endpoints_are_the_reconstructions(digits):
    model, _, x, _ = digits
    for spherical in (False, True):
        path = explore.interpolate(model, x[0], x[7], steps=7, spherical=spherical)
        assert path.shape == (7, 1, 8, 8)
        ends = model.reconstruct(torch.stack([x[0], x[7]]))
        assert torch.allclose(path[0], ends[0], atol=1e-6) and torch.allclose(path[-1], ends[1], atol=1e-6)
        assert not torch.allclose(path[3], ends[0], atol=1e-3)


def test_slerp_walks_the_great_circle():
    z0, z1 = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 2.0])
    mid = explore.slerp(z0, z1, torch.tensor([[0.5]]))[0]
    assert torch.allclose(mid, torch.tensor([math.sqrt(2), math.sqrt(2)]))  # norm 2 kept, where lerp gives norm √2
    same = explore.slerp(z0, 3 * z0, torch.tensor([[0.25]]))[0]  # parallel: falls back to linear
    assert torch.allclose(same, torch.tensor([3.0, 0.0]))


def test_manifold_grid_corners_are_inverse_cdf_values():
    n = 20
    z = explore.manifold_z(n, 5, units=(3, 1))
    lo, hi = norm.ppf(0.5 / n), norm.ppf(1 - 0.5 / n)  # the outermost of n evenly spaced points (i + ½)/n
    assert z.shape == (n, n, 5)
    assert z[0, 0, 3].item() == pytest.approx(lo, abs=1e-6) and z[0, 0, 1].item() == pytest.approx(hi, abs=1e-6)  # top left
    assert z[-1, -1, 3].item() == pytest.approx(hi, abs=1e-6) and z[-1, -1, 1].item() == pytest.approx(lo, abs=1e-6)
    assert (z[..., [0, 2, 4]] == 0).all()
    assert torch.allclose(z[0, :, 3], torch.tensor(norm.ppf((torch.arange(n) + 0.5).numpy() / n), dtype=torch.float32), atol=1e-6)


def test_manifold_decodes_the_grid(digits):
    model = digits[0]
    images = explore.manifold(model, 5, (0, 2))
    assert images.shape == (5, 5, 1, 8, 8)
    assert torch.allclose(images[2, 4], model.decode(explore.manifold_z(5, 4, (0, 2))[2, 4]).mean)
    with pytest.raises(VaekitError, match=r"latent unit\(s\) \[7\]: the model has units 0 to 3"):
        explore.manifold(model, 5, (0, 7))


def test_traversal_rows_move_one_unit(digits):
    model, _, x, _ = digits
    grid = explore.traverse(model, x[3], units=[2, 0], span=2.0, steps=3)
    assert grid.shape == (2, 3, 1, 8, 8)
    z = model.encode(x[3:4]).mean[0]
    for row, u in enumerate((2, 0)):
        for col, v in enumerate((-2.0, 0.0, 2.0)):
            zz = z.clone()
            zz[u] = v
            assert torch.allclose(grid[row, col], model.decode(zz).mean, atol=1e-6)


def test_most_active_units_order_by_variance_of_means(digits):
    model, _, x, _ = digits
    order = explore.most_active_units(model, x)
    v = model.encode(x).mean.var(0)
    assert sorted(order) == [0, 1, 2, 3] and all(v[a] >= v[b] for a, b in zip(order, order[1:]))


def test_masks():
    left = explore.make_mask("left", (1, 28, 28), n=2)
    assert left.shape == (2, 1, 28, 28) and left[..., :14].all() and not left[..., 14:].any()
    bottom = explore.make_mask("bottom", (3, 8, 6))
    assert bottom[..., 4:, :].all() and not bottom[..., :4, :].any()
    rnd = explore.make_mask("random", (1, 100, 100), fraction=0.3, generator=torch.Generator().manual_seed(0))
    assert abs(rnd.float().mean().item() - 0.3) < 0.01
    with pytest.raises(VaekitError, match="mask 'diagonal': expected one of"):
        explore.make_mask("diagonal", (1, 8, 8))


@pytest.mark.parametrize("method", ["pseudo-gibbs", "metropolis"])
def test_imputation_keeps_every_observed_pixel(digits, method):
    model, _, x, _ = digits
    missing = explore.make_mask("random", tuple(x.shape[1:]), len(x), 0.4, torch.Generator().manual_seed(2))
    filled, rate = explore.impute(model, x, missing, steps=20, method=method, generator=torch.Generator().manual_seed(3))
    assert torch.equal(filled[~missing], x[~missing])
    assert not torch.equal(filled[missing], x[missing]) and ((filled >= 0) & (filled <= 1)).all()
    assert (rate is None) if method == "pseudo-gibbs" else (0 < rate <= 1)


@pytest.mark.parametrize("method", ["pseudo-gibbs", "metropolis"])
def test_imputation_beats_the_mean_on_mnist_halves(mnist_run, method):
    _, dataset = prepare(mnist_run.config)
    model = mnist_run.model.eval()
    x, _ = materialize(dataset.test, 200, "cpu", 0)
    train_mean = dataset.train.x[:10000].float().mean(0) / 255
    for half in ("bottom", "right"):
        missing = explore.make_mask(half, (1, 28, 28), len(x))
        filled, _ = explore.impute(model, x, missing, steps=50, method=method, generator=torch.Generator().manual_seed(0),
                                   init=train_mean)
        ours = explore.imputation_error(x, filled, missing)
        by_mean = explore.imputation_error(x, torch.where(missing, train_mean.expand_as(x), x), missing)
        print(f"{method} {half}: model {ours:.4f}, mean imputation {by_mean:.4f}")
        assert ours < 0.95 * by_mean


def test_embedding(digits):
    model, _, x, _ = digits
    points, how = explore.embed(model, x, "pca")
    assert points.shape == (len(x), 2) and "PCA" in how
    assert points[:, 0].var() >= points[:, 1].var()
    tsne, how = explore.embed(model, x[:60], "tsne")
    assert tsne.shape == (60, 2) and "t-SNE" in how and torch.isfinite(tsne).all()
    with pytest.raises(VaekitError, match="embedding method 'umap'"):
        explore.embed(model, x, "umap")


def test_a_denoising_autoencoder_removes_its_own_corruption(tmp_path):
    from vaekit import Config, fit

    sets = ['model.kind="dae"', 'model.corruption="mask"', "model.noise=0.3", 'data.binarize="none"', "train.epochs=40",
            "train.tensorboard=false"]
    run = fit(Config(out=str(tmp_path / "dae")).override(sets))
    _, dataset = prepare(run.config)
    x, _ = materialize(dataset.test, 300, "cpu", 0)
    x_tilde, x_hat = explore.denoise(run.model.eval(), x, generator=torch.Generator().manual_seed(0))
    hit = x_tilde != x
    assert ((x_tilde == 0) | ~hit).all() and 0.25 < hit[x != 0].float().mean() < 0.35  # its own corruption: 30 % of pixels zeroed
    assert (x_hat - x).pow(2).mean() < 0.5 * (x_tilde - x).pow(2).mean()


def test_an_autoencoder_cannot_sample(tmp_path):
    from vaekit import Config, fit

    run = fit(Config(out=str(tmp_path / "ae")).override(['model.kind="ae"', "train.epochs=1", "train.tensorboard=false"]))
    with pytest.raises(VaekitError, match="a Autoencoder has no prior to sample from"):
        explore.prior_samples(run.model, 4)
