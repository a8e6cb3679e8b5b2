"""A Tune callback in the sweep's driver: one progress line per trial epoch, end and error."""

from __future__ import annotations

from collections.abc import Callable

from ray.tune import Callback


class ProgressCallback(Callback):
    def __init__(self, progress: Callable[[str], None], metric: str, time_attr: str) -> None:
        self.progress = progress
        self.metric = metric
        self.time_attr = time_attr

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        epoch = int(result.get(self.time_attr, 0))
        value = result.get(self.metric, float("nan"))
        self.progress(f"trial {trial.trial_id} epoch {epoch}: {self.metric} {value:.3f}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.progress(f"trial {trial.trial_id} ended")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.progress(f"trial {trial.trial_id} failed")
