"""``BayesianGaussianMixture`` against scikit-learn's, from the same start, and its
model files, scoring and errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import zarr
from sklearn.mixture import BayesianGaussianMixture as SklearnBGM

import streammix as sm
from streammix.core import variational
from streammix.errors import InvalidInputError, InvalidParameterError
from streammix.io.modelmeta import check_model_files

FAMILIES = ("full", "tied", "diag", "spherical")
PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")
# Every fitted array of scikit-learn's estimator that streammix must reproduce.
FITTED = (
    "weights_",
    "means_",
    "covariances_",
    "precisions_",
    "precisions_cholesky_",
    "mean_precision_",
    "degrees_of_freedom_",
    "weight_concentration_",
)


def blobs(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = np.concatenate(
        [
            rng.normal([-4.0, 0.0, 1.0], 1.0, (300, 3)),
            rng.normal([4.0, 1.0, -1.0], [1.5, 0.7, 1.0], (300, 3)),
            rng.normal([0.0, 8.0, 0.0], 0.5, (200, 3)),
        ]
    )
    return X[rng.permutation(len(X))]


def as_zarr(tmp_path, X: np.ndarray, chunk_rows: int) -> zarr.Array:
    z = zarr.create_array(
        str(tmp_path / "x.zarr"), shape=X.shape, chunks=(chunk_rows, X.shape[1]), dtype="f8"
    )
    z[...] = X
    return z


def max_relative(a: object, b: object) -> float:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    assert x.shape == y.shape
    return float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-300)))


def continue_both(model: sm.BayesianGaussianMixture, X: np.ndarray, data: object, max_iter: int):
    """scikit-learn's estimator holding ``model``'s posterior; then both continue."""
    theirs = model.to_sklearn().set_params(warm_start=True, max_iter=max_iter)
    model.set_params(warm_start=True, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.fit(X)
        model.fit(data)
    return theirs


# ------------------------------------------------------------------ parity
@pytest.mark.parametrize("chunked", [False, True], ids=["numpy", "zarr"])
@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
@pytest.mark.parametrize("family", FAMILIES)
def test_parity_with_sklearn_from_the_same_start(tmp_path, family, prior_type, chunked):
    X = blobs()
    data = as_zarr(tmp_path, X, 97) if chunked else X
    # the start: streammix's initialisation and first variational M-step
    ours = sm.BayesianGaussianMixture(
        6,
        covariance_type=family,
        weight_concentration_prior_type=prior_type,
        max_iter=0,
        random_state=0,
    ).fit(data)
    theirs = continue_both(ours, X, data, max_iter=500)
    assert ours.converged_ and theirs.converged_
    assert ours.n_iter_ == theirs.n_iter_ > 5
    for name in FITTED:
        assert max_relative(getattr(ours, name), getattr(theirs, name)) < 1e-6, name
    bounds = np.ravel(np.asarray(theirs.lower_bounds_, dtype=np.float64))
    np.testing.assert_allclose(ours.lower_bounds_, bounds, rtol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-9)
    np.testing.assert_allclose(
        np.asarray(ours.score_samples(data)), theirs.score_samples(X), rtol=1e-9
    )
    assert ours.score(data) == pytest.approx(theirs.score(X), rel=1e-9)


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
@pytest.mark.parametrize("family", FAMILIES)
def test_the_first_m_step_equals_sklearns_from_the_same_responsibilities(family, prior_type):
    # Well-separated clusters: both k-means give the same labels, so both start from
    # the same one-hot responsibilities (up to the components' order).
    X = blobs(1)
    settings = {
        "n_components": 3,
        "covariance_type": family,
        "weight_concentration_prior_type": prior_type,
        "max_iter": 0,
        "random_state": 0,
    }
    ours = sm.BayesianGaussianMixture(**settings).fit(X)
    theirs = SklearnBGM(**settings).fit(X)
    order = [int(np.argmin(np.sum((ours.means_ - m) ** 2, axis=1))) for m in theirs.means_]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(ours.means_[order], theirs.means_, rtol=1e-9)
    np.testing.assert_allclose(ours.mean_precision_[order], theirs.mean_precision_, rtol=1e-9)
    if family == "tied":
        np.testing.assert_allclose(ours.covariances_, theirs.covariances_, rtol=1e-9)
        assert ours.degrees_of_freedom_ == pytest.approx(theirs.degrees_of_freedom_, rel=1e-12)
    else:
        np.testing.assert_allclose(ours.covariances_[order], theirs.covariances_, rtol=1e-9)
        np.testing.assert_allclose(
            ours.degrees_of_freedom_[order], theirs.degrees_of_freedom_, rtol=1e-12
        )
    if prior_type == "dirichlet_distribution":
        np.testing.assert_allclose(
            ours.weight_concentration_[order], theirs.weight_concentration_, rtol=1e-9
        )


@pytest.mark.parametrize("family", FAMILIES)
def test_default_priors_are_sklearns_on_chunked_data(tmp_path, family):
    X = blobs() * 10.0 + 1e4  # far from the origin: the moments are merged centred
    ours = sm.BayesianGaussianMixture(2, covariance_type=family, max_iter=0, random_state=0)
    ours.fit(as_zarr(tmp_path, X, 64))
    theirs = SklearnBGM(n_components=2, covariance_type=family, max_iter=0, random_state=0)
    theirs.fit(X)
    np.testing.assert_allclose(ours.mean_prior_, theirs.mean_prior_, rtol=1e-12)
    np.testing.assert_allclose(ours.covariance_prior_, theirs.covariance_prior_, rtol=1e-10)
    assert np.shape(ours.covariance_prior_) == np.shape(theirs.covariance_prior_)
    assert ours.degrees_of_freedom_prior_ == theirs.degrees_of_freedom_prior_ == 3
    assert ours.mean_precision_prior_ == theirs.mean_precision_prior_ == 1.0
    assert ours.weight_concentration_prior_ == theirs.weight_concentration_prior_ == 0.5


def test_given_priors_are_used_as_sklearn_uses_them():
    X = blobs()
    priors = {
        "weight_concentration_prior": 0.3,
        "mean_precision_prior": 0.5,
        "mean_prior": [0.0, 1.0, 2.0],
        "degrees_of_freedom_prior": 4.5,
        "covariance_prior": np.diag([2.0, 1.0, 0.5]),
    }
    ours = sm.BayesianGaussianMixture(4, max_iter=0, random_state=0, **priors).fit(X)
    theirs = continue_both(ours, X, X, max_iter=200)
    for name in FITTED:
        assert max_relative(getattr(ours, name), getattr(theirs, name)) < 1e-6, name
    np.testing.assert_array_equal(ours.mean_prior_, priors["mean_prior"])


def test_results_do_not_depend_on_the_chunking_or_the_format(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    X = blobs()
    table = pa.table({f"x{j}": X[:, j] for j in range(X.shape[1])})
    pq.write_table(table, tmp_path / "x.parquet", row_group_size=700)
    fits = [
        sm.BayesianGaussianMixture(5, random_state=0, max_iter=300).fit(data)
        for data in (X, as_zarr(tmp_path, X, 50), str(tmp_path / "x.parquet"))
    ]
    for other in fits[1:]:
        assert fits[0].n_iter_ == other.n_iter_
        for name in FITTED:
            assert max_relative(getattr(fits[0], name), getattr(other, name)) < 1e-9, name


def test_superfluous_components_get_no_weight():
    X = blobs()
    model = sm.BayesianGaussianMixture(8, random_state=0, max_iter=500).fit(X)
    assert model.converged_
    assert variational.effective_components(model.weights_) == 3
    assert np.sum(model.weights_) == pytest.approx(1.0)


def test_restarts_keep_the_best_lower_bound():
    # the first of n_init restarts is the single run of the same random_state
    X = blobs()
    settings = {"random_state": 0, "max_iter": 300, "init_params": "random"}
    single = sm.BayesianGaussianMixture(4, **settings).fit(X)
    several = sm.BayesianGaussianMixture(4, n_init=4, **settings).fit(X)
    assert several.lower_bound_ >= single.lower_bound_
    assert several.lower_bound_ == several.lower_bounds_[-1]


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_initialisation_fits(init_params):
    X = blobs()
    model = sm.BayesianGaussianMixture(
        4, init_params=init_params, random_state=0, max_iter=500
    ).fit(X)
    assert model.converged_
    assert np.all(np.diff(model.lower_bounds_) > -1e-6)  # the bound never decreases


# ---------------------------------------------------------- model files
@pytest.mark.parametrize(
    ("family", "prior_type"),
    [("full", "dirichlet_process"), ("tied", "dirichlet_distribution"), ("spherical", None)],
)
def test_model_files_round_trip(tmp_path, family, prior_type):
    X = blobs()
    kwargs = {} if prior_type is None else {"weight_concentration_prior_type": prior_type}
    if family == "spherical":
        kwargs["covariance_prior"] = 0.7
    model = sm.BayesianGaussianMixture(
        4, covariance_type=family, random_state=0, max_iter=300, **kwargs
    ).fit(X)
    loaded = sm.load(model.save(tmp_path / "model"))
    assert type(loaded) is sm.BayesianGaussianMixture
    assert loaded.get_params() == {**model.get_params(), "random_state": None}  # not saved
    for name in (*FITTED, "mean_prior_", "covariance_prior_", "lower_bounds_"):
        assert max_relative(getattr(loaded, name), getattr(model, name)) == 0.0, name
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.n_iter_ == model.n_iter_ and loaded.converged_ == model.converged_


def test_model_files_with_a_wrong_posterior_shape_are_refused():
    model = sm.BayesianGaussianMixture(3, random_state=0, max_iter=50).fit(blobs())
    meta, arrays = model.to_files()
    arrays["weight_concentration"] = arrays["weight_concentration"][0]
    with pytest.raises(InvalidInputError, match="'weight_concentration' has shape"):
        check_model_files(meta, arrays)
    meta, arrays = model.to_files()
    del meta["variational"]
    with pytest.raises(InvalidInputError, match="no field 'variational'"):
        check_model_files(meta, arrays)


def test_the_info_job_shows_the_effective_components(tmp_path):
    from streammix.jobs.info_job import model_summary

    model = sm.BayesianGaussianMixture(8, random_state=0, max_iter=500).fit(blobs())
    summary = model_summary(model.save(tmp_path / "model"))
    assert summary["kind"] == "BayesianGaussianMixture"
    assert summary["effective_components"] == 3


def test_to_sklearn_gives_the_same_predictions():
    X = blobs()
    model = sm.BayesianGaussianMixture(4, covariance_type="diag", random_state=0).fit(X)
    theirs = model.to_sklearn()
    np.testing.assert_array_equal(theirs.predict(X), model.predict(X))
    np.testing.assert_allclose(theirs.score_samples(X), model.score_samples(X), rtol=1e-12)
    sample, labels = model.sample(50)
    assert sample.shape == (50, 3) and labels.shape == (50,)
    assert isinstance(model.marginal([0, 2]), sm.GaussianMixture)


# ---------------------------------------------------------------- errors
def test_lowrank_is_refused_with_the_reason_and_the_alternatives():
    with pytest.raises(InvalidParameterError, match="no conjugate .*GaussianMixture"):
        sm.BayesianGaussianMixture(covariance_type="lowrank").fit(blobs())


def test_bad_priors_are_refused_with_sklearns_messages():
    X = blobs()
    with pytest.raises(InvalidParameterError, match="should be greater than 2, but got 2.000"):
        sm.BayesianGaussianMixture(degrees_of_freedom_prior=2.0).fit(X)
    with pytest.raises(InvalidParameterError, match=r"'diag covariance_prior' should have"):
        sm.BayesianGaussianMixture(covariance_type="diag", covariance_prior=np.eye(3)).fit(X)
    with pytest.raises(InvalidParameterError, match="positive-definite"):
        sm.BayesianGaussianMixture(covariance_prior=-np.eye(3)).fit(X)
    with pytest.raises(InvalidParameterError, match="'means' should have the shape"):
        sm.BayesianGaussianMixture(mean_prior=[0.0, 1.0]).fit(X)
    with pytest.raises(InvalidParameterError, match="weight_concentration_prior_type"):
        sm.BayesianGaussianMixture(weight_concentration_prior_type="pitman_yor").fit(X)
    with pytest.raises(InvalidInputError, match="minimum of 2 is required"):
        sm.BayesianGaussianMixture().fit(X[:1])


def test_a_posterior_cannot_be_made_from_point_parameters():
    with pytest.raises(InvalidParameterError, match="defined by its posterior"):
        sm.BayesianGaussianMixture.from_parameters([1.0], [[0.0]], [[[1.0]]])


def test_the_fit_job_runs_it_and_info_counts_the_effective_components(tmp_path):
    import json

    from .conftest import write_zarr
    from .test_cli import run

    write_zarr(tmp_path / "d.zarr", blobs(), 200)
    run("fit", tmp_path / "d.zarr", "--model", tmp_path / "m", "--method", "bayesian",
        "--n-components", 6, "--weight-concentration-prior-type", "dirichlet_distribution",
        "--weight-concentration-prior", 1e-3, "--max-iter", 500, "--n-workers", 1)  # fmt: skip
    model = sm.load(tmp_path / "m")
    assert isinstance(model, sm.BayesianGaussianMixture)
    _, out, _ = run("info", tmp_path / "m", "--json")
    info = json.loads(out)
    assert info["effective_components"] == int(np.sum(model.weights_ >= 0.01)) == 3
    _, out, _ = run("score", tmp_path / "d.zarr", "--model", tmp_path / "m", "--output",
                    tmp_path / "s.zarr", "--n-workers", 1)  # fmt: skip
    scores = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")["log_likelihood"][:]
    np.testing.assert_allclose(scores, model.score_samples(blobs()), rtol=1e-9)
