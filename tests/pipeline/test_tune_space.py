"""Search spaces, sweep sizing and trial configs: validated before any trial starts."""

from __future__ import annotations

import pytest

from jobs.tune import parse_duration
from pipeline.config.job import ScalingSettings, load_job_config
from pipeline.errors import UserError
from pipeline.tune.resources import TRIAL_DRIVER_CPUS, plan_sweep
from pipeline.tune.space import load_space, trial_params
from pipeline.tune.trial import trial_config


@pytest.mark.parametrize("name", ["digits", "mnist"])
def test_shipped_spaces_load_against_their_configs(name):
    space = load_space(name, name, [])
    keys = {d.key for d in space.dimensions}
    assert {"optim.lr", "objective.kl_warmup_steps", "model.latent_dim"} <= keys
    assert set(space.param_space()) == keys
    assert space.grid_size() == 1 and not space.has_grid()


def _space(tmp_path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model.nope: {choice: [1, 2]}", "space: unknown key model.nope"),
        ("optim.lr: {uniform: [0.01, 0.01]}", "space key optim.lr: empty uniform range"),
        ("model.latent_dim: {int: [9, 4]}", "space key model.latent_dim: empty int range"),
        ("optim.lr: {gaussian: [0, 1]}", "space key optim.lr: unknown distribution 'gaussian'"),
        ("optim.lr: {loguniform: [0, 1]}", "space key optim.lr: loguniform needs 0 < low"),
        ("optim.lr: {choice: []}", "space key optim.lr: choice needs a non-empty list"),
        ("optim.lr: 0.001", "space key optim.lr: needs exactly one distribution"),
        ("model.latent_dim: {choice: [8, 0]}", "space: model.latent_dim=0: must be an int >= 1"),
        ("model.latent_dim: {int: [4, 8.5]}", "int bounds must be integers"),
        ("scaling.workers: {choice: [1, 2]}", "scaling.* is set by the sweep"),
        ("lr: {choice: [1]}", "space key lr: must be a dotted config key"),
        ("- optim.lr", "must be a non-empty mapping"),
    ],
)
def test_bad_spaces_fail_in_one_line_naming_the_key(tmp_path, text, message):
    with pytest.raises(UserError) as err:
        load_space(_space(tmp_path, text), "digits", [])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_grid_dimensions_multiply(tmp_path):
    text = "optim.lr: {grid: [0.001, 0.002]}\nmodel.hidden_sizes: {grid: [[64], [128], [256]]}\n"
    space = load_space(_space(tmp_path, text), "digits", [])
    assert space.has_grid() and space.grid_size() == 6


def test_unknown_space_name_lists_the_shipped_ones():
    with pytest.raises(UserError, match="digits, mnist"):
        load_space("no-such-space", "digits", [])


def test_trial_config_applies_the_sampled_keys_and_skips_is_nll():
    base = load_job_config("digits", []).to_dict()
    params = {"optim.lr": 0.003, "model.hidden_sizes": [32, 16], "model.latent_dim": 5}
    cfg = trial_config(base, params, "sweep-abc_00001")
    assert cfg.optim.lr == 0.003 and cfg.model.latent_dim == 5
    assert list(cfg.model.hidden_sizes) == [32, 16]
    assert cfg.train.nll_samples == 0 and cfg.tracking.run_name == "sweep-abc_00001"


@pytest.mark.parametrize(
    ("cpus", "trials", "max_concurrent", "slots"),
    [(2.0, 8, None, 1), (8.0, 16, None, 6), (8.0, 3, None, 3), (8.0, 16, 2, 2)],
)
def test_sweep_keeps_cpu_for_data_and_fits_workers(cpus, trials, max_concurrent, slots):
    plan = plan_sweep(ScalingSettings(workers=0), {"CPU": cpus}, trials, max_concurrent)
    assert plan.max_concurrent == slots
    used = slots * (plan.workers.cpus_per_worker + TRIAL_DRIVER_CPUS)
    assert used <= cpus - 1.0  # at least one CPU stays free for Ray Data's tasks
    assert plan.workers.threads_per_worker >= 1


def test_gpu_sweep_without_gpus_is_a_user_error():
    with pytest.raises(UserError, match="needs 1 GPUs"):
        plan_sweep(ScalingSettings(use_gpu=True), {"CPU": 8.0}, 4)


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0)])
def test_time_budget_units(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_time_budget():
    with pytest.raises(ValueError, match="--time-budget"):
        parse_duration("soon")


def _tune_configs(param_space: dict) -> list[dict]:
    """The trial configs Tune's own variant generator makes of ``param_space`` (one sample)."""
    from ray.tune.experiment import Experiment
    from ray.tune.search.basic_variant import BasicVariantGenerator

    generator = BasicVariantGenerator()
    generator.add_configurations([Experiment("space", lambda config: None, config=param_space)])
    configs = []
    while (trial := generator.next_trial()) is not None:
        configs.append(trial.config)
    return configs


def test_a_shuffled_grid_has_every_point_once_in_an_order_fixed_by_the_seed(tmp_path):
    text = (
        "optim.lr: {grid: [0.001, 0.003]}\nmodel.hidden_sizes: {grid: [[64], [128], [256]]}\n"
        "model.latent_dim: {choice: [4, 8]}\n"
    )
    space = load_space(_space(tmp_path, text), "digits", [])
    nested = [trial_params(c) for c in _tune_configs(space.param_space())]
    shuffled = [trial_params(c) for c in _tune_configs(space.param_space(shuffle_seed=0))]
    again = [trial_params(c) for c in _tune_configs(space.param_space(shuffle_seed=0))]

    def grid_points(params):
        return [(p["optim.lr"], tuple(p["model.hidden_sizes"])) for p in params]

    assert len(shuffled) == 6 and all(p["model.latent_dim"] in (4, 8) for p in shuffled)
    assert sorted(grid_points(shuffled)) == sorted(grid_points(nested))
    assert len(set(grid_points(shuffled))) == 6
    assert grid_points(shuffled) != grid_points(nested)  # seed 0 moves the nested-loop order
    assert grid_points(again) == grid_points(shuffled)
