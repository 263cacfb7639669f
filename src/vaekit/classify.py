"""The encoder put to other uses: posterior means as features, and the encoder as the first
layers of a classifier trained from few labels (against the same classifier from scratch, and
a logistic regression on PCA features, at the same number of labels)."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .files import write_atomic
from .errors import VaekitError
from .limits import checked


@torch.no_grad()
def features(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Posterior means E[z|x] (the code of a plain autoencoder): (N, k)."""
    if model.conditional:
        raise VaekitError("a conditional VAE's code depends on the label it is given; features need an unconditional model")
    model.eval()
    return torch.cat([model.encode(x[i:i + batch_size]).mean for i in range(0, len(x), batch_size)])


def write_features(model, x: torch.Tensor, y: torch.Tensor | None, path: str | Path) -> tuple[int, int]:
    """Posterior means of x into a .npy file, or a .npz with ``features`` and (when given) ``labels``; their shape."""
    path = Path(path)
    if path.suffix not in (".npy", ".npz"):
        raise VaekitError(f"--out {path}: expected a .npy or .npz file name")
    f = features(model, x).cpu().numpy()
    arrays = {"features": f, **({"labels": y.cpu().numpy()} if y is not None else {})}

    def write(tmp):  # through a file object: given a name, numpy would add its own suffix to the temporary one
        with open(tmp, "wb") as fh:
            if path.suffix == ".npz":
                np.savez(fh, **arrays)
            else:
                np.save(fh, f)

    write_atomic(path, write)
    return f.shape


class EncoderClassifier(nn.Module):
    """An encoder body with a linear layer on its posterior mean (the first half of a VAE encoder's output)."""

    def __init__(self, encoder: nn.Module, width: int, takes_mean_half: bool, n_classes: int):
        super().__init__()
        self.encoder, self.half = encoder, takes_mean_half
        self.head = nn.Linear(width // 2 if takes_mean_half else width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        return self.head(h.chunk(2, -1)[0] if self.half else h)


def labelled_subset(y: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of n examples, as even across classes as n allows, drawn at random within each class."""
    classes = torch.unique(y)
    if n < len(classes):
        raise VaekitError(f"--labels {n}: fewer labelled examples than the {len(classes)} classes")
    picks = []
    for i, c in enumerate(classes.tolist()):
        members = (y == c).nonzero().flatten()
        take = n // len(classes) + (1 if i < n % len(classes) else 0)
        if take > len(members):
            raise VaekitError(f"--labels {n}: class {c} has only {len(members)} training examples")
        picks.append(members[torch.randperm(len(members), generator=generator)[:take]])
    return torch.cat(picks)


def _fit(net: EncoderClassifier, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> nn.Module:
    """The head alone first, then everything at a tenth of the rate: fine-tuning from a fitted head
    keeps a good encoder's features instead of tearing them up with a random head's gradients (full batch: no draws)."""
    net.train()
    for params, rate in ((net.head.parameters(), lr * 10), (net.parameters(), lr)):
        opt = torch.optim.Adam(params, lr=rate, weight_decay=1e-4)
        for _ in range(steps):  # full batch: a few hundred labelled examples
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def _accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (net(x).argmax(-1) == y).float().mean().item()


@checked
def compare_classifiers(model, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                        labels: int = 100, repeats: int = 3, steps: int = 300, lr: float = 1e-3, seed: int = 0) -> dict[str, Any]:
    """Test accuracy, mean over ``repeats`` draws of ``labels`` labelled training examples, of (1) the
    encoder with a linear head, fine-tuned; (2) the same network from a fresh initialization; (3) a
    logistic regression on PCA features of the model's latent size (PCA fit on all training images)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression

    if model.conditional or model.hierarchical:
        raise VaekitError("classify uses a one-layer unconditional encoder (model.kind vae, ae or dae)")
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    width = model.encoder(x_train[:1]).shape[-1]
    is_vae = model.prior is not None
    k = width // 2 if is_vae else width
    pca = PCA(k, random_state=seed).fit(x_train.flatten(1).cpu().numpy())
    p_train, p_test = pca.transform(x_train.flatten(1).cpu().numpy()), pca.transform(x_test.flatten(1).cpu().numpy())
    scores: dict[str, list[float]] = {"encoder-initialized": [], "from scratch": [], "PCA + logistic regression": []}
    for r in range(repeats):
        idx = labelled_subset(y_train, labels, torch.Generator().manual_seed(seed + r))
        xl, yl = x_train[idx], y_train[idx]
        with torch.random.fork_rng(devices=[]):  # seeded initializations that leave the caller's RNG alone
            torch.manual_seed(seed + r)
            pretrained = EncoderClassifier(copy.deepcopy(model.encoder), width, is_vae, n_classes)
            scratch = copy.deepcopy(pretrained)
            for m in scratch.modules():  # every layer that has an initialization of its own, norms included
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        scratch.head.load_state_dict(pretrained.head.state_dict())  # the same head start: only the encoder differs
        scores["encoder-initialized"].append(_accuracy(_fit(pretrained, xl, yl, steps, lr), x_test, y_test))
        scores["from scratch"].append(_accuracy(_fit(scratch, xl, yl, steps, lr), x_test, y_test))
        clf = LogisticRegression(max_iter=3000).fit(p_train[idx.cpu().numpy()], yl.cpu().numpy())
        scores["PCA + logistic regression"].append(float(clf.score(p_test, y_test.cpu().numpy())))
    return {"labels": labels, "repeats": repeats, "latent_dim": k,
            "accuracy": {name: sum(v) / len(v) for name, v in scores.items()}, "runs": scores}
