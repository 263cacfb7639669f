"""Learning-rate schedules: the rate at each optimizer step as a pure function of the step and the run's length.

A schedule is computed, never stepped: the rate at step t depends only on t, the steps per epoch and the
planned number of steps, so a resumed run continues it exactly and a time-budgeted run can re-plan its
length as it measures its speed. A linear warm-up, when asked, comes in front: the rate rises from lr/W to
lr over the first W steps, and the schedule then runs over the steps that remain.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = ("constant", "step", "exponential", "cosine", "burda")

# Burda et al. (2015), section 5: stage i = 0..7 lasts 3^i epochs at 1e-3 · 10^(-i/7); 3,280 epochs in all
BURDA_STAGES = tuple(3**i for i in range(8))


@dataclass(frozen=True)
class Schedule:
    """``schedule(step)``: the learning rate of optimizer step ``step`` (0-based)."""

    kind: str
    lr: float
    steps_per_epoch: int
    total_steps: int  # the run's planned length; a time-budgeted run re-plans it as it goes
    warmup_steps: int = 0
    milestones: tuple[int, ...] = ()  # step: epochs at which the rate is multiplied by gamma
    gamma: float = 0.1  # step: the factor per milestone; exponential: the factor per epoch
    lr_min: float = 0.0  # cosine: the rate it ends at

    def __call__(self, step: int) -> float:
        w = self.warmup_steps
        if step < w:
            return self.lr * (step + 1) / w
        t, span = step - w, max(self.total_steps - w, 1)
        epoch = t / self.steps_per_epoch
        if self.kind == "constant":
            return self.lr
        if self.kind == "step":
            return self.lr * self.gamma ** sum(epoch >= m for m in self.milestones)
        if self.kind == "exponential":
            return self.lr * self.gamma**epoch
        progress = min(t / span, 1.0)
        if self.kind == "cosine":
            return self.lr_min + (self.lr - self.lr_min) * 0.5 * (1 + math.cos(math.pi * progress))
        return self.lr * 10 ** (-burda_stage(progress) / 7)


def burda_stage(progress: float) -> int:
    """The stage (0..7) of Burda et al.'s schedule at ``progress`` (0..1) of the run, stages scaled to its length."""
    at = progress * sum(BURDA_STAGES)
    done = 0
    for i, length in enumerate(BURDA_STAGES):
        done += length
        if at < done:
            return i
    return len(BURDA_STAGES) - 1


def from_config(tc, steps_per_epoch: int, total_steps: int) -> Schedule:
    """The schedule ``train.schedule`` and its keys describe, for a run of ``total_steps`` steps."""
    return Schedule(tc.schedule, tc.lr, max(steps_per_epoch, 1), max(total_steps, 1), tc.warmup_steps, tc.milestones, tc.gamma,
                    tc.lr_min)
