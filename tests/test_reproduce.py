import csv
import json

import pytest

from vaekit.cli import main
from vaekit.errors import VaekitError
from vaekit.reproduce import grad_variance


def test_grad_variance_writes_numbers_figure_and_summary(tmp_path, capsys):
    assert main(["reproduce", "grad-variance", "--dataset", "digits", "--budget", "4000", "--checkpoints", "2", "--draws", "15",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    out = tmp_path / "grad-variance"
    r = json.loads((out / "grad_variance.json").read_text())
    assert [row["samples"] for row in r["rows"]] == [2000, 4000]
    for row in r["rows"]:
        assert row["ratio_score_function"] > 10 and row["ratio_score_function_baseline"] < row["ratio_score_function"]
    with open(out / "grad_variance.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert (out / "grad_variance.png").stat().st_size > 1000
    summary = (out / "summary.md").read_text()
    assert "| 2,000 |" in summary and "score function" in summary and "| training samples |" in capsys.readouterr().out


def test_grad_variance_needs_a_budget(tmp_path):
    with pytest.raises(VaekitError, match="--budget 100: at least 100 samples per checkpoint"):
        grad_variance(tmp_path, "digits", budget=100, checkpoints=6)
