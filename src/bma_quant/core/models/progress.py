"""A progress bar per Optuna study, advanced by a trial callback.

Optuna's own bar (`show_progress_bar=True`) attaches a log handler to Optuna's logger while a study
runs and restores Optuna's stderr handler when it ends: Optuna's warnings then printed twice, once
with a trial's whole traceback (a Ctrl-C in a trial showed 30 lines), beside the project's logging.
This bar prints nothing but itself.
"""

from __future__ import annotations

import optuna
from tqdm.auto import tqdm


class TrialProgressBar:
    """`callback(study, trial)` after every finished trial (complete, pruned or failed)."""

    def __init__(self, name: str, total: int) -> None:
        # disable=None: drawn on a terminal only; redirected to a file, each redraw was a
        # carriage return inside one endless line of the log
        self.bar = tqdm(total=int(total), desc=name, unit="trial", disable=None)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.bar.update(1)
        complete = [t for t in study.get_trials(deepcopy=False)
                    if t.state == optuna.trial.TrialState.COMPLETE and t.values]
        if complete:
            best = max(complete, key=lambda t: t.values[0]) \
                if study.direction == optuna.study.StudyDirection.MAXIMIZE \
                else min(complete, key=lambda t: t.values[0])
            self.bar.set_postfix_str(f"best trial {best.number}: {best.values[0]:.6f}")

    def close(self) -> None:
        self.bar.close()
