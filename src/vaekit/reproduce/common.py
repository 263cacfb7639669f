"""What the reproductions share: their outputs, the paper's step-size choice, fixed evaluation subsets, seed groups."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Callable

import torch

from ..data.parts import MemoryPart, materialize
from ..errors import VaekitError
from ..files import write_text


def write_outputs(out: Path, name: str, result: dict, rows: list[dict], plot, summary) -> dict[str, Any]:
    """What every reproduction leaves: raw numbers as JSON and CSV, the figure, a markdown summary."""
    write_text(out / f"{name}.json", json.dumps(result, indent=2) + "\n")
    write_text(out / f"{name}.csv", csv_text(rows))
    plot(out / f"{name}.png")
    write_text(out / "summary.md", summary(result))
    return result


def csv_text(rows: list[dict]) -> str:
    """Rows of dicts as CSV text, a column for every key any row has."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))  # a column for every field any row has
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


# Kingma & Welling (2013), section 5: Adagrad "with a global stepsize parameter chosen from {0.01, 0.02, 0.1}
# based on performance on the training set in the first few iterations"
STEP_SIZES = (0.01, 0.02, 0.1)


def pilot_steps(last: int) -> int:
    """The paper's "first few iterations": a twentieth of the run, at most 1,000 steps."""
    return max(1, min(last // 20, 1000))


def pick_step_size(train_for: Callable[[float], torch.nn.Module],
                    score: Callable[[torch.nn.Module], float]) -> tuple[float, dict[str, float | None]]:
    """The step size in STEP_SIZES whose short run scores best (higher is better), and every candidate's score;
    a candidate that diverges (a VaekitError or a score that is not finite) scores None and is never chosen."""
    scores: dict[float, float] = {}
    for lr in STEP_SIZES:
        try:
            scores[lr] = score(train_for(lr))
        except VaekitError:
            scores[lr] = math.nan
        if not math.isfinite(scores[lr]):
            scores[lr] = -math.inf
    best = max(scores, key=scores.get)
    return best, {str(lr): v if math.isfinite(v) else None for lr, v in scores.items()}


def fixed_rows(part, n: int):
    """The first ``n`` rows of a split as an in-memory part, binarized once."""
    x, y = materialize(part, n, "cpu", 0)
    return MemoryPart(x, y, 1.0)  # binarized once: every checkpoint is measured on the same images


def across_seeds(points: list[dict], *keys: str) -> list[list[dict]]:
    """The points grouped by everything in ``keys`` but the seed, in the order of the first seed's."""
    groups: dict[tuple, list[dict]] = {}
    for p in points:
        groups.setdefault(tuple(p[k] for k in keys), []).append(p)
    return list(groups.values())


