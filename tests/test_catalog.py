"""Job declarations: one option list per job drives the CLI, pipelines, --config and env.

The command line runs through the installed entry point where it matters (exit codes,
messages); parsing alone goes through the click commands made from the catalog.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import zarr

import streammix as sm
from streammix.cli.app import cli
from streammix.errors import PipelineError
from streammix.jobs import fit_job
from streammix.jobs.catalog import CLUSTER_OPTIONS, JOBS, STORAGE_OPTIONS
from streammix.jobs.declaration import OptionError, flag_spelling
from streammix.jobs.fit_options import ESTIMATOR_OPTIONS, fit_estimator
from streammix.jobs.kinds import BadValue, Bounds
from streammix.pipeline import load_pipeline

from .test_cli import assert_one_line_error, run

# Array parameters, which a command line or a pipeline key cannot hold.
ARRAYS = ("weights_init", "means_init", "precisions_init", "mean_prior", "covariance_prior")


def cli_options(command: str, *args: str) -> dict:
    """The options ``streammix COMMAND ARGS`` hands its job (parsed, not run)."""
    ctx = cli.commands[command].make_context(command, list(args))
    params = dict(ctx.params)
    params.pop("as_json")
    for o in CLUSTER_OPTIONS:
        params.pop(o.name)
    return params


def step_options(tmp_path, job: str, body: str) -> dict:
    p = tmp_path / "p.toml"
    p.write_text(f'[[step]]\njob = "{job}"\n{body}')
    return load_pipeline(p).steps[0].options


def fit_data(path, rows=4000, features=6):
    X = np.random.default_rng(0).normal(size=(rows, features))
    zarr.create_array(str(path), shape=X.shape, chunks=(1000, features), dtype="f8")[...] = X
    return path


# ----------------------------------------------------- the estimators' surface
@pytest.mark.parametrize("method", list(fit_job.ESTIMATORS))
def test_every_estimator_parameter_is_an_option_of_fit(method):
    cls = fit_job.ESTIMATORS[method]
    wanted = {p for p in inspect.signature(cls).parameters if p not in ARRAYS}
    params = {p.name for p in cli.commands["fit"].params}
    assert wanted <= params, f"{cls.__name__}: no option for {sorted(wanted - params)}"
    fed = {o.estimator for o in ESTIMATOR_OPTIONS if o.estimator}
    assert wanted <= fed


def test_fit_help_offers_lowrank_and_rank():
    _, text, _ = run("fit", "--help")
    assert "lowrank" in text and "--rank INTEGER" in text
    assert "--random-state, --seed" in text and "--init-params, --init" in text
    for section in (
        "Data:",
        "Model:",
        "EM:",
        "Online EM:",
        "Outlier detector:",
        "Bayesian:",
        "Cluster:",
    ):
        assert section in text


def test_shown_defaults_come_from_the_estimators_signatures():
    _, text, _ = run("fit", "--help")
    text = " ".join(text.split())
    gm = inspect.signature(sm.GaussianMixture).parameters
    online = inspect.signature(sm.OnlineGaussianMixture).parameters
    assert f"batch, bayesian only; default: {gm['tol'].default:g}]" in text
    assert f"online only; default: {online['learning_decay'].default:g}]" in text
    reg = inspect.signature(sm.OutlierDetector).parameters["reg_covar"].default
    assert f"{reg:g} (detector)" in text


def test_top_level_help_groups_commands_by_what_users_do():
    _, text, _ = run("--help")
    lines = text.split("Commands:")[1].splitlines()
    heads = {ln.split()[0]: ln.split()[1] for ln in lines if len(ln.split()) > 1}
    assert heads["fit"] == "jobs" and heads["info"] == "models"
    assert heads["generate"] == "data" and heads["kde"] == "density"
    assert {ln.split()[0] for ln in lines if ln.strip()} == set(cli.commands)


# ------------------------------------------------------- one path, two fronts
@pytest.mark.parametrize(
    ("args", "toml"),
    [
        (
            ["--n-components", "3", "--covariance-type", "lowrank", "--rank", "2", "--tol", "0"],
            'n_components = 3\ncovariance_type = "lowrank"\nrank = 2\ntol = 0\n',
        ),
        (
            ["--n-components", "2", "--seed", "7", "--init", "random", "--n-init", "3"],
            'n_components = 2\nseed = 7\ninit = "random"\nn_init = 3\n',
        ),
        (
            "--n-components 2 --method online --learning-decay 0.7 --no-shuffle "
            "--averaging 5 --batch-size 100",
            'n_components = 2\nmethod = "online"\nlearning_decay = 0.7\nshuffle = false\n'
            "averaging = 5\nbatch_size = 100\n",
        ),
        (
            ["--method", "detector", "--trim", "0.2", "--contamination", "0.05"],
            'method = "detector"\ntrim = 0.2\ncontamination = 0.05\n',
        ),
    ],
)
def test_cli_and_pipeline_build_the_same_estimator(tmp_path, args, toml):
    args = args.split() if isinstance(args, str) else args
    from_cli = fit_estimator(cli_options("fit", "d.zarr", "--model", "m", *args))
    from_step = fit_estimator(step_options(tmp_path, "fit", f'data = "d"\nmodel = "m"\n{toml}'))
    assert type(from_cli) is type(from_step)
    assert from_cli.get_params() == from_step.get_params()


def test_fit_defaults_leave_the_estimators_defaults(tmp_path):
    est = fit_estimator(cli_options("fit", "d.zarr", "--model", "m", "--n-components", "2"))
    expected = sm.GaussianMixture(2, random_state=0).get_params()
    assert est.get_params() == expected


def test_lowrank_fit_from_the_cli_and_from_a_pipeline(tmp_path):
    data = fit_data(tmp_path / "d.zarr")
    run(
        "fit", data, "--model", tmp_path / "cli", "--n-components", 2,
        "--covariance-type", "lowrank", "--rank", 3, "--max-iter", 20,
    )  # fmt: skip
    pipeline = tmp_path / "lowrank.toml"
    pipeline.write_text(
        '[[step]]\njob = "fit"\ndata = "d.zarr"\nmodel = "step"\nn_components = 2\n'
        'covariance_type = "lowrank"\nrank = 3\nmax_iter = 20\n'
    )
    run("run", pipeline)
    for name in ("cli", "step"):
        model = sm.load(tmp_path / name)
        assert model.covariance_type == "lowrank" and model.rank == 3, name
    np.testing.assert_array_equal(
        sm.load(tmp_path / "cli").means_, sm.load(tmp_path / "step").means_
    )


# -------------------------------------------------------------- refusals
def test_an_option_of_another_method_is_refused(tmp_path):
    args = ["fit", "x.zarr", "--model", "m", "--n-components", 2, "--method", "online"]
    code, _, err = run(*args, "--max-iter", 5, cwd=tmp_path, check=False)
    assert_one_line_error(code, err, 2, "--max-iter does not apply to --method online")
    code, _, err = run("fit", "x.zarr", "--model", "m", "--method", "detector",
                       "--warm-start", cwd=tmp_path, check=False)  # fmt: skip
    assert_one_line_error(code, err, 2, "--warm-start does not apply to --method detector")
    with pytest.raises(PipelineError, match="'max_iter' does not apply to method = 'online'"):
        step_options(
            tmp_path,
            "fit",
            'data = "d"\nmodel = "m"\nn_components = 2\nmethod = "online"\nmax_iter = 5\n',
        )


def test_a_misspelt_config_key_names_the_key_the_file_and_the_fix(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[fit]\nn_component = 3\n")
    code, _, err = run("--config", cfg, "info", "m", check=False)
    assert_one_line_error(
        code,
        err,
        2,
        f"unknown key 'n_component' in [fit] of {cfg} (did you mean 'n_components'?)",
    )
    cfg.write_text("[cluster]\nn_worker = 1\n")
    code, _, err = run("--config", cfg, "info", "m", check=False)
    assert_one_line_error(code, err, 2, "did you mean 'n_workers'?")
    cfg.write_text('[fit]\nn_components = "three"\n')
    code, _, err = run("--config", cfg, "info", "m", check=False)
    assert_one_line_error(code, err, 2, f"n_components in [fit] of {cfg} must be an integer")


def test_a_misspelt_pipeline_key_names_the_key_the_file_and_the_fix(tmp_path):
    p = tmp_path / "typo.toml"
    p.write_text('[[step]]\njob = "fit"\ndata = "d"\nmodel = "m"\nn_component = 3\n')
    code, _, err = run("run", p, "--check", check=False)
    assert_one_line_error(code, err, 2, str(p))
    assert "unknown key 'n_component' (did you mean 'n_components'?)" in err


def test_an_older_name_and_its_new_name_together_are_refused(tmp_path):
    with pytest.raises(PipelineError, match="either 'random_state' or 'seed', not both"):
        step_options(tmp_path, "fit", 'data = "d"\nmodel = "m"\nn_components = 2\n'
                     "random_state = 1\nseed = 2\n")  # fmt: skip
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[score]\nmodel = "a"\nmodel_dir = "b"\n')
    code, _, err = run("--config", cfg, "info", "m", check=False)
    assert_one_line_error(code, err, 2, "either 'model' or 'model_dir', not both")


def test_pipelines_and_the_cli_agree_on_what_is_required(tmp_path):
    with pytest.raises(PipelineError, match="missing required key 'n_components'"):
        step_options(tmp_path, "fit", 'data = "d"\nmodel = "m"\n')
    detector = step_options(tmp_path, "fit", 'data = "d"\nmodel = "m"\nmethod = "detector"\n')
    assert detector["n_components"] is None
    flag = step_options(tmp_path, "flag", 'data = "d"\noutput = "o"\ncontamination = 0.1\n')
    assert flag["model"] is None
    with pytest.raises(PipelineError, match="'resume' needs 'checkpoint'"):
        step_options(tmp_path, "fit", 'data = "d"\nmodel = "m"\nn_components = 2\nresume = true\n')


# ------------------------------------------------------ environment, config
def test_environment_variables_are_derived_from_the_names(monkeypatch):
    monkeypatch.setenv("STREAMMIX_FIT_N_COMPONENTS", "5")
    monkeypatch.setenv("STREAMMIX_FIT_SEED", "9")
    monkeypatch.setenv("STREAMMIX_FIT_COVARIANCE_TYPE", "lowrank")
    monkeypatch.setenv("STREAMMIX_FIT_RANK", "2")
    est = fit_estimator(cli_options("fit", "d.zarr", "--model", "m"))
    assert (est.n_components, est.random_state, est.covariance_type, est.rank) == (
        5,
        9,
        "lowrank",
        2,
    )


def test_config_tables_take_the_canonical_names_and_the_older_ones(tmp_path):
    data = fit_data(tmp_path / "d.zarr", rows=2000, features=3)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(
        f'[fit]\nmodel_dir = "{tmp_path / "m"}"\nn_components = 2\ninit = "random"\n'
        'covariance-type = "lowrank"\nrank = 1\nmax_iter = 5\n'
    )
    run("--config", cfg, "fit", data)
    model = sm.load(tmp_path / "m")
    assert (model.init_params, model.covariance_type, model.rank) == ("random", "lowrank", 1)


# ------------------------------------------------------------ declarations
def test_every_option_feeds_its_job():
    extra = {"fit": {"method"}, "flag": {"random_state"}}
    for name, job in JOBS.items():
        params = set(inspect.signature(job.function).parameters)
        for opt in job.options:
            feeds = opt.target in params or opt.estimator or opt.name in extra.get(name, ())
            assert feeds, f"{name}: {opt.name} feeds nothing"
            assert opt.name == opt.name.lower() and "-" not in opt.name


def test_values_are_refused_in_each_front_ends_words():
    n = JOBS["fit"].option("n_components")
    with pytest.raises(BadValue) as err:
        n.value("0", text=True)
    assert err.value.sentence() == "0 is not in [1, inf)."
    assert err.value.predicate() == "must be in [1, inf); got 0"
    with pytest.raises(BadValue, match="not an integer"):
        n.value("4")  # a TOML string is not an integer, even when it reads as one
    assert str(Bounds(0, 0.5, low_open=True)) == "(0, 0.5]"
    err2 = OptionError("{0} does not apply to {1}.", "max_iter", ("method", "online"))
    assert err2.worded(flag_spelling) == "--max-iter does not apply to --method online."
    with pytest.raises(BadValue) as err3:
        STORAGE_OPTIONS.value('{"secret": "hunter22"', text=True)
    assert "hunter22" not in err3.value.sentence() + err3.value.predicate()


def test_a_flag_step_without_a_model_fits_a_detector_like_the_cli(tmp_path):
    data = fit_data(tmp_path / "d.zarr", rows=3000, features=3)
    p = tmp_path / "flag.toml"
    p.write_text(
        '[[step]]\njob = "flag"\ndata = "d.zarr"\noutput = "f.zarr"\ncontamination = 0.02\n'
    )
    run("run", p)
    run("flag", data, "--output", tmp_path / "g.zarr", "--contamination", 0.02)
    assert sm.load(tmp_path / "f.zarr.detector").contamination == 0.02
    flags = [zarr.open_group(str(tmp_path / n), mode="r")["flag"][:] for n in ("f.zarr", "g.zarr")]
    np.testing.assert_array_equal(*flags)
