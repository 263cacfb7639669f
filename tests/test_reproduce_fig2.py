import json

import pytest

from vaekit.cli import main
from vaekit.errors import VaekitError
from vaekit.reproduce import aevb_fig2


def test_aevb_fig2_on_digits_writes_both_methods_for_each_latent_size(tmp_path, capsys):
    assert main(["reproduce", "aevb-fig2", "--dataset", "digits", "--latent-sizes", "2,5", "--budget", "8000", "--checkpoints", "3",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    out = tmp_path / "aevb-fig2"
    r = json.loads((out / "fig2.json").read_text())
    for k in (2, 5):
        for method in ("AEVB", "wake-sleep"):
            pts = [p for p in r["points"] if p["latent_dim"] == k and p["method"] == method]
            assert [p["samples"] for p in pts] == [400, 1900, 8000]  # log-spaced: round(80^(1/3)), round(80^(2/3)), 80 steps of 100
            assert pts[-1]["train_elbo"] > pts[0]["train_elbo"]  # both learn
            assert all(p["test_elbo"] < 0 for p in pts)
    assert (out / "fig2.png").stat().st_size > 1000 and (out / "fig2.csv").exists()
    assert "| 2 |" in (out / "summary.md").read_text() and "wake-sleep" in capsys.readouterr().out


def test_aevb_fig2_needs_a_budget(tmp_path):
    with pytest.raises(VaekitError, match="--budget 100"):
        aevb_fig2(tmp_path, "digits", budget=100)
