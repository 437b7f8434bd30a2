"""OutlierDetector: the robust recipe, the outlier-detector API, files, flagging, explanations."""

from __future__ import annotations

import json
import math

import dask.array as da
import numpy as np
import pytest
import zarr

import streammix as sm
from streammix.core.explain import conditional_zscores
from streammix.engine.trimmed import without_light_component
from streammix.estimators import outlier_detector as od

from .test_cli import run


def contaminated(n=3000, d=5, share=0.05, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    X = rng.normal(size=(n, d)) @ a + 3.0
    k = int(share * n)
    X[:k] = rng.uniform(-15, 20, (k, d))
    labels = np.zeros(n, dtype=int)
    labels[:k] = 1
    return X, labels


def reference_fit(X, reg=0.1, trim=0.3, max_steps=50):
    """The recipe written out with dense numpy: standardise, ridge, concentration steps."""
    m, s = X.mean(0), X.std(0)
    s[s < 1e-12] = 1.0
    Z = (X - m) / s

    def fit(rows):
        mu = rows.mean(0)
        C = (rows - mu).T @ (rows - mu) / len(rows) + reg * np.eye(X.shape[1])
        return mu, C

    mu, C = fit(Z)
    h = math.ceil((1 - trim) * len(Z))
    previous = None
    for _ in range(max_steps):
        d2 = np.einsum("ij,ij->i", (Z - mu) @ np.linalg.inv(C), Z - mu)
        keep = d2 <= np.partition(d2, h - 1)[h - 1]
        if previous is not None and np.array_equal(keep, previous):
            break
        previous = keep
        mu, C = fit(Z[keep])
    return m + s * mu, C * np.outer(s, s)


def test_the_fit_is_the_trimmed_recipe():
    X, _ = contaminated()
    det = sm.OutlierDetector(n_components=1, covariance_type="full", random_state=0)
    det.tol = 0.0
    det.fit(X)
    mean, cov = reference_fit(X)
    np.testing.assert_allclose(det.means_[0], mean, rtol=1e-9)
    np.testing.assert_allclose(det.covariances_[0], cov, rtol=1e-8)
    assert det.n_iter_ >= 2 and det.converged_


def test_outlier_detector_api_follows_scikit_learn():
    X, labels = contaminated()
    det = sm.OutlierDetector(contamination=0.05, random_state=0).fit(X)
    assert det.n_features_in_ == 5 and det.threshold_ == det.offset_
    scores = det.score_samples(X)
    assert np.mean(scores < det.threshold_) == pytest.approx(0.05, abs=0.002)
    np.testing.assert_allclose(det.decision_function(X), scores - det.offset_)
    pred = det.predict(X)
    assert set(np.unique(pred)) == {-1, 1}
    assert np.mean(pred[labels == 1] == -1) > 0.9
    np.testing.assert_array_equal(
        sm.OutlierDetector(contamination=0.05, random_state=0).fit_predict(X), pred
    )
    # a density role, not an EM estimator: no component assignments, no EM settings
    for name in ("predict_proba", "init_params", "warm_start", "means_init"):
        assert not hasattr(det, name), name
    assert isinstance(det.marginal([0, 1]), sm.GaussianMixture)


def test_lazy_input_gives_the_same_detector_and_lazy_predictions(tmp_path):
    X, _ = contaminated()
    a = sm.OutlierDetector(random_state=0).fit(X)
    b = sm.OutlierDetector(random_state=0).fit(da.from_array(X, chunks=(700, 5)))
    path = tmp_path / "x.zarr"
    z = zarr.create_array(str(path), shape=X.shape, chunks=(1000, 5), dtype="f8")
    z[:] = X
    c = sm.OutlierDetector(random_state=0).fit(str(path))
    for other in (b, c):
        np.testing.assert_allclose(other.covariances_, a.covariances_, rtol=1e-9)
        assert other.threshold_ == pytest.approx(a.threshold_, rel=1e-12)
    lazy = c.predict(str(path))
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), a.predict(X))


def test_detector_files_round_trip(tmp_path):
    X, _ = contaminated()
    det = sm.OutlierDetector(contamination=0.02, random_state=0).fit(X)
    det.save(tmp_path / "det")
    back = sm.load(tmp_path / "det")
    assert type(back) is sm.OutlierDetector
    assert back.threshold_ == det.threshold_ and back.contamination == 0.02
    np.testing.assert_array_equal(back.predict(X), det.predict(X))


def test_explanations_point_at_the_unusual_feature():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4000, 4))
    X[:, 1] = X[:, 0] + 0.1 * rng.normal(size=4000)  # feature 1 follows feature 0
    X[0] = [2.0, -2.0, 0.0, 0.0]  # each value ordinary alone, not together
    det = sm.OutlierDetector(n_components=1, random_state=0).fit(X)
    e = det.explain(X[:1])
    assert e["top_features"][0, 0] in (0, 1)
    assert np.abs(e["zscores"][0, :2]).min() > 5 and np.abs(e["zscores"][0, 2:]).max() < 3
    p = det.params_
    np.testing.assert_allclose(e["zscores"], conditional_zscores(p, X[:1], np.zeros(1, int)))
    # the conditional z-score of feature j is (x_j - E[x_j | rest]) / sd[x_j | rest]
    S = p.dense_covariances()[0]
    mu = p.means[0]
    j, rest = 2, [0, 1, 3]
    w = np.linalg.solve(S[np.ix_(rest, rest)], S[rest, j])
    cond_mean = mu[j] + w @ (X[0, rest] - mu[rest])
    cond_sd = math.sqrt(S[j, j] - S[rest, j] @ w)
    assert e["zscores"][0, j] == pytest.approx((X[0, j] - cond_mean) / cond_sd, rel=1e-9)


def test_flag_without_a_model_fits_a_detector_and_explains(tmp_path):
    X, labels = contaminated(20_000, 4, 0.01)
    data = tmp_path / "d.zarr"
    g = zarr.open_group(str(data), mode="w")
    g.create_array("X", shape=X.shape, chunks=(5_000, 4), dtype="f8")[:] = X
    g.create_array("truth", shape=labels.shape, chunks=(5_000,), dtype="i1")[:] = labels
    _, out, _ = run(
        "flag",
        data,
        "--output",
        tmp_path / "f.zarr",
        "--contamination",
        0.01,
        "--explain",
        "--truth",
        data / "truth",
        "--json",
    )
    summary = json.loads(out)
    assert summary["threshold"]["method"] == "model"
    assert summary["precision"] > 0.9 and summary["recall"] > 0.9
    detector = sm.load(tmp_path / "f.zarr.detector")
    assert type(detector) is sm.OutlierDetector and detector.contamination == 0.01
    flags = zarr.open_group(str(tmp_path / "f.zarr"), mode="r")
    z = flags["zscores"][:]
    flagged = flags["flag"][:] == 1
    assert np.isfinite(z[flagged]).all() and np.isnan(z[~flagged]).all()
    assert (flags["component"][:] == 0).all()
    # a fitted detector can be passed as --model
    run("flag", data, "--model", tmp_path / "f.zarr.detector", "--output", tmp_path / "g.zarr")
    np.testing.assert_array_equal(
        zarr.open_group(str(tmp_path / "g.zarr"), mode="r")["flag"][:], flags["flag"][:]
    )


def test_fit_command_makes_a_detector(tmp_path):
    X, _ = contaminated(5_000, 3)
    path = tmp_path / "d.zarr"
    z = zarr.create_array(str(path), shape=X.shape, chunks=(1_000, 3), dtype="f8")
    z[:] = X
    _, out, _ = run(
        "fit",
        path,
        "--model",
        tmp_path / "m",
        "--method",
        "detector",
        "--contamination",
        0.05,
        "--json",
    )
    assert json.loads(out)["kind"] == "OutlierDetector"
    assert sm.load(tmp_path / "m").contamination == 0.05


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(contamination=0.7), "'contamination' parameter"),
        (dict(trim=0.9), "'trim' parameter"),
        (dict(covariance_type="spherical"), "'covariance_type' parameter"),
        (dict(n_components="many"), "'n_components' parameter"),
        (dict(n_components=0), "'n_components' parameter"),
        (dict(rank=0), "'rank' parameter"),
    ],
)
def test_bad_detector_settings(kwargs, match):
    with pytest.raises(sm.InvalidParameterError, match=match):
        sm.OutlierDetector(**kwargs).fit(np.zeros((10, 2)))


def modes_and_a_tight_cluster(seed=0):
    """Three normal modes (30 % each) and a tight group of anomalies (10 %)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [8.0, 0.0, 0.0], [0.0, 8.0, 0.0]])
    X = np.concatenate([rng.normal(c, 1.0, (900, 3)) for c in centres])
    return np.concatenate([X, rng.normal([4.0, 4.0, 9.0], 0.05, (300, 3))])


def test_the_minimum_component_mass_is_honoured():
    X = modes_and_a_tight_cluster()
    free = sm.OutlierDetector(n_components=4, random_state=0)
    free.min_weight = 0.0
    free.fit(X)
    held = sm.OutlierDetector(n_components=4, random_state=0)
    held.min_weight = 0.2
    held.fit(X)
    assert held.weights_.min() >= 0.2 and len(held.weights_) <= 3
    assert len(free.weights_) == 4
    # the tight cluster is not a normal mode of the robust model
    assert held.score_samples(X[-300:]).max() < np.quantile(held.score_samples(X[:-300]), 0.5)


def test_a_light_component_is_removed_and_the_rest_renormalised():
    rng = np.random.default_rng(0)
    base = sm.GaussianMixture.from_parameters(
        [0.5, 0.45, 0.05], rng.normal(size=(3, 2)), np.stack([np.eye(2)] * 3)
    ).params_
    lighter = without_light_component(base, 0.1)
    assert lighter is not None and lighter.n_components == 2
    np.testing.assert_allclose(lighter.weights, [0.5 / 0.95, 0.45 / 0.95])
    np.testing.assert_array_equal(lighter.means, base.means[:2])
    assert without_light_component(base, 0.05) is None


def test_wide_data_get_a_low_rank_or_regularised_model():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 300)) + rng.normal(size=(120, 3)) @ rng.normal(size=(3, 300))
    det = sm.OutlierDetector(random_state=0).fit(X)
    k, name, _ = det.resolved(120, 300)
    assert (k, name) == (1, od.WIDE_COVARIANCE) and det.covariance_type_ == name
    assert len(det.weights_) == 1 and np.isfinite(det.score_samples(X)).all()
    lowrank = sm.OutlierDetector(covariance_type="lowrank", random_state=0).fit(X)
    assert lowrank.rank_ == min(od.WIDE_RANK, 12)  # at most a tenth of the rows
    assert lowrank.covariances_.shape == (1, 300, lowrank.rank_ + 1)


def test_narrow_data_get_the_narrow_recipe():
    det = sm.OutlierDetector()
    assert det.resolved(10_000, 8) == (od.NARROW_COMPONENTS, "full", None)
    assert det.resolved(30, 8)[:2] == (1, od.WIDE_COVARIANCE)


@pytest.mark.parametrize("shape", [(3000, 3), (120, 300)])
def test_new_defaults_are_deterministic_and_round_trip(tmp_path, shape):
    rng = np.random.default_rng(3)
    X = modes_and_a_tight_cluster() if shape[1] == 3 else rng.normal(size=shape)
    a = sm.OutlierDetector(random_state=7).fit(X)
    b = sm.OutlierDetector(random_state=7).fit(X)
    np.testing.assert_array_equal(a.covariances_, b.covariances_)
    assert a.threshold_ == b.threshold_
    a.save(tmp_path / "det")
    back = sm.load(tmp_path / "det")
    assert type(back) is sm.OutlierDetector and back.covariance_type == a.covariance_type_
    np.testing.assert_array_equal(back.score_samples(X), a.score_samples(X))
    np.testing.assert_array_equal(back.predict(X), a.predict(X))
