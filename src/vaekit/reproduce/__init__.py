"""The experiments of Auto-Encoding Variational Bayes (Kingma & Welling, 2013) and Burda et al.'s (2015) Table 1,
rerun with one call each.

Each writes its raw numbers (JSON and CSV), its figure (PNG) and a short markdown summary into
its output folder. For the AEVB figures ``budget`` is the number of training samples to evaluate, so a CPU run
can take minutes and a full run the paper's 10⁸; Table 1's rows each train for ``budget_minutes``.
"""
from pathlib import Path

from .fig2 import aevb_fig2
from .fig3 import aevb_fig3
from .grad_variance import grad_variance
from .iwae_table1 import iwae_table1, parse_rows

EXPERIMENTS = ("grad-variance", "aevb-fig2", "aevb-fig3", "iwae-table1")


def run(experiment: str, out: str | Path, dataset: str = "mnist", budget: int = 600_000, checkpoints: int = 6, draws: int = 50,
        data_dir: str | None = None, seed: int = 0, seeds: int = 1, test_rows: int | None = None, train_sizes: str | None = None,
        latent_sizes: str | None = None, progress: bool = False, budget_minutes: float = 10.0, rows: str | None = None,
        k: int = 5000) -> Path:
    """One experiment by name, with the command line's options (sizes as comma-separated text); its folder."""
    from ..errors import VaekitError
    from ..views import parse_units

    out = Path(out)
    if experiment == "grad-variance":
        grad_variance(out, dataset, budget, checkpoints, draws, data_dir, seed, progress)
    elif experiment == "aevb-fig3":
        sizes = parse_units(train_sizes, "--train-sizes", "sizes")
        aevb_fig3(out, dataset, budget, tuple(sizes) if sizes else (1000, 50000), checkpoints, data_dir, seed,
                  100 if test_rows is None else test_rows, seeds)
    elif experiment == "aevb-fig2":
        sizes = parse_units(latent_sizes, "--latent-sizes", "sizes")
        aevb_fig2(out, dataset, budget, tuple(sizes) if sizes else None, checkpoints, data_dir, seed, progress=progress, seeds=seeds)
    elif experiment == "iwae-table1":
        iwae_table1(out, dataset, budget_minutes, parse_rows(rows), k, test_rows, data_dir, seed, progress=progress)
    else:
        raise VaekitError(f"experiment {experiment!r}: expected one of {', '.join(EXPERIMENTS)}")
    return out


__all__ = ["EXPERIMENTS", "aevb_fig2", "aevb_fig3", "grad_variance", "iwae_table1", "run"]
