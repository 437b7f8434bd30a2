"""The per-feature mixtures and the detector score that adds them to the joint mixture."""

from __future__ import annotations

import json
import warnings

import dask.array as da
import numpy as np
import pytest
import zarr
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import streammix as sm
from streammix.core import feature_mixtures as fm
from streammix.io.modelfile import read_model_dir, write_model_dir

from .test_cli import run


def skewed_modes(n=4000, d=4, seed=0):
    """Features with two modes, one skewed, one heavy-tailed."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:, 0] += np.where(rng.random(n) < 0.3, 6.0, 0.0)
    X[:, 1] = rng.exponential(2.0, n)
    X[:, 2] = rng.standard_t(3, n)
    return X


def test_em_steps_are_those_of_a_one_dimensional_gaussian_mixture():
    X = skewed_modes()
    reg, steps = 1e-3, 7
    mix = fm.feature_start(X, None, 3, reg)
    start = mix
    for _ in range(steps):
        mix = fm.feature_mstep(fm.feature_estep(X, 0, mix), mix, reg)
    for j in range(X.shape[1]):
        sk = SkGaussianMixture(
            3,
            covariance_type="full",
            reg_covar=reg,
            max_iter=steps,
            tol=0.0,
            weights_init=start.weights[j],
            means_init=start.means[j][:, None],
            precisions_init=(1.0 / start.variances[j])[:, None, None],
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            sk.fit(X[:, j : j + 1])
        np.testing.assert_allclose(mix.weights[j], sk.weights_, rtol=1e-7)
        np.testing.assert_allclose(mix.means[j], sk.means_[:, 0], rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(mix.variances[j], sk.covariances_[:, 0, 0], rtol=1e-7)
    # a row's log-density is the sum of its features' mixture log-densities
    rows = X[:20]
    terms = (
        mix.weights[None]
        * np.exp(-0.5 * (rows[:, :, None] - mix.means[None]) ** 2 / mix.variances[None])
        / np.sqrt(2 * np.pi * mix.variances[None])
    )
    np.testing.assert_allclose(
        fm.feature_log_density(rows, mix), np.log(terms.sum(axis=2)).sum(axis=1), rtol=1e-12
    )


def test_blocks_weights_and_bad_rows():
    X = skewed_modes(n=3000)
    mix = fm.feature_start(X, None, 3, 1e-3)
    whole = fm.feature_estep(X, 0, mix)
    old = fm.BLOCK_ENTRIES
    fm.BLOCK_ENTRIES = 60  # five rows per block
    try:
        blocked = fm.feature_estep(X, 0, mix)
        blocked_density = fm.feature_log_density(X, mix)
    finally:
        fm.BLOCK_ENTRIES = old
    for a, b in zip(whole, blocked, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    np.testing.assert_allclose(blocked_density, fm.feature_log_density(X, mix), rtol=1e-12)
    halves = fm.merge_feature_stats(
        fm.feature_estep(X[:1000], 0, mix), fm.feature_estep(X[1000:], 0, mix)
    )
    for a, b in zip(whole, halves, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    # a row of weight 3 counts as three rows, one of weight 0 as none
    w = np.tile([3.0, 0.0, 1.0], 1000)
    repeated = np.repeat(X, w.astype(int), axis=0)
    for a, b in zip(
        fm.feature_estep(X, 0, mix, w), fm.feature_estep(repeated, 0, mix), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    bad = X[:4].copy()
    bad[1, 2], bad[3, 0] = np.nan, np.inf
    out = fm.feature_log_density(bad, mix)
    assert np.isnan(out[[1, 3]]).all() and np.isfinite(out[[0, 2]]).all()


def test_a_component_no_row_chooses_is_emptied_not_nan():
    X = np.zeros((100, 1))
    X[50:] = 1.0
    mix = fm.FeatureMixtures(np.full((1, 3), 1 / 3), np.array([[0.0, 1.0, 1e6]]), np.ones((1, 3)))
    new = fm.feature_mstep(fm.feature_estep(X, 0, mix), mix, 1e-3).check()
    assert new.weights[0, 2] == 0.0 and new.variances[0, 2] == pytest.approx(1.001)
    np.testing.assert_allclose(new.weights[0, :2], [0.5, 0.5], rtol=1e-6)


def test_the_score_is_the_fixed_combination_of_two_log_likelihoods():
    X = skewed_modes()
    det = sm.OutlierDetector(feature_weight=0.5, random_state=0).fit(X)
    a, b, c = det.score_coefficients_
    joint = sm.GaussianMixture.from_parameters(det.weights_, det.means_, det.covariances_)
    ll = joint.score_samples(X)
    lq = fm.feature_log_density(X, det.feature_mixtures_)
    np.testing.assert_allclose(det.score_samples(X), a * ll + b * lq + c, rtol=1e-10, atol=1e-10)
    # both parts standardised on the training rows, the second weighted 0.5
    assert a == pytest.approx(1 / ll.std(), rel=1e-8) and b == pytest.approx(
        0.5 / lq.std(), rel=1e-8
    )
    assert det.score(X) == pytest.approx(0.0, abs=1e-9)
    assert np.mean(det.score_samples(X) < det.threshold_) == pytest.approx(0.1, abs=0.002)
    # the threshold fit takes from the rows' log-likelihoods at hand is calibrate's
    fitted = det.threshold_
    assert det.calibrate(X, 0.1) == fitted and det.offset_ == fitted
    with pytest.raises(sm.InvalidParameterError, match="feature_weight=0"):
        det.bic(X)
    plain = sm.OutlierDetector(feature_weight=0, random_state=0).fit(X)
    assert plain.feature_mixtures_ is None
    np.testing.assert_allclose(plain.means_, det.means_, rtol=1e-12)
    np.testing.assert_allclose(plain.score_samples(X), ll, rtol=1e-10)
    assert np.isfinite(plain.bic(X))


def test_lazy_and_zarr_input_give_the_numpy_detector(tmp_path):
    X = skewed_modes()
    a = sm.OutlierDetector(random_state=0).fit(X)
    b = sm.OutlierDetector(random_state=0).fit(da.from_array(X, chunks=(700, 4)))
    np.testing.assert_allclose(b.feature_mixtures_.means, a.feature_mixtures_.means, rtol=1e-9)
    np.testing.assert_allclose(b.score_coefficients_, a.score_coefficients_, rtol=1e-9)
    assert b.threshold_ == pytest.approx(a.threshold_, rel=1e-12)
    w = np.random.default_rng(1).integers(0, 4, len(X)).astype(float)
    c = sm.OutlierDetector(random_state=0).fit(X, sample_weight=w)
    d = sm.OutlierDetector(random_state=0).fit(
        da.from_array(X, chunks=(700, 4)), sample_weight=da.from_array(w, chunks=700)
    )
    assert d.threshold_ == pytest.approx(c.threshold_, rel=1e-12)
    fitted = c.threshold_
    assert c.calibrate(X, 0.1, w) == fitted
    lazy = b.score_samples(da.from_array(X, chunks=(900, 4)))
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), a.score_samples(X), rtol=1e-9)
    assert b.score(X) == pytest.approx(a.score(X), abs=1e-9)


def test_the_per_feature_part_finds_what_the_joint_mixture_misses():
    """Eight independent two-mode features (256 joint modes): a value between the
    modes of one feature is rare, but a mixture of a few joint components
    covers the gap."""
    rng = np.random.default_rng(5)
    n, d = 6000, 8
    X = rng.normal(scale=0.5, size=(n, d)) + rng.choice([-3.0, 3.0], size=(n, d))
    test = rng.normal(scale=0.5, size=(400, d)) + rng.choice([-3.0, 3.0], size=(400, d))
    y = np.zeros(400)
    y[:40] = 1
    test[np.arange(40), rng.integers(0, d, 40)] = rng.normal(scale=0.3, size=40)
    auc = {
        w: roc_auc_score(
            y, -sm.OutlierDetector(feature_weight=w, random_state=0).fit(X).score_samples(test)
        )
        for w in (0.0, 1.0)
    }
    assert auc[1.0] > auc[0.0] + 0.1 and auc[1.0] > 0.9, auc


def test_detector_files_keep_the_score_and_refuse_broken_ones(tmp_path):
    X = skewed_modes()
    det = sm.OutlierDetector(contamination=0.03, random_state=0).fit(X)
    det.save(tmp_path / "det")
    back = sm.load(tmp_path / "det")
    np.testing.assert_array_equal(back.score_samples(X), det.score_samples(X))
    assert back.threshold_ == det.threshold_ and back.score_coefficients_ == det.score_coefficients_
    meta, arrays = read_model_dir(tmp_path / "det")
    assert meta["score"]["feature_components"] == det.feature_components
    broken = [
        ("feature_variances", lambda a: -a, "positive variances"),
        ("feature_weights", lambda a: 2 * a, "sum to one"),
        ("feature_means", lambda a: a[:, :2], "shape"),
    ]
    for i, (name, change, match) in enumerate(broken):
        bad = dict(arrays)
        bad[name] = change(arrays[name])
        write_model_dir(tmp_path / f"bad{i}", meta, bad)
        with pytest.raises((ValueError, KeyError), match=match):
            sm.load(tmp_path / f"bad{i}")
    missing = {k: v for k, v in arrays.items() if k != "feature_means"}
    write_model_dir(tmp_path / "missing", meta, missing)
    with pytest.raises((ValueError, KeyError), match="feature_means"):
        sm.load(tmp_path / "missing")


def test_cli_flags_with_the_combined_score(tmp_path):
    X = skewed_modes(n=8000)
    path = tmp_path / "d.zarr"
    zarr.create_array(str(path), shape=X.shape, chunks=(1500, 4), dtype="f8")[:] = X
    run("fit", path, "--model", tmp_path / "m", "--method", "detector", "--contamination", 0.02)
    det = sm.load(tmp_path / "m")
    assert det.feature_mixtures_ is not None
    _, out, _ = run(
        "flag", path, "--model", tmp_path / "m", "--output", tmp_path / "f.zarr", "--json"
    )
    assert json.loads(out)["threshold"]["method"] == "model"
    got = zarr.open_group(str(tmp_path / "f.zarr"), mode="r")
    np.testing.assert_allclose(got["log_likelihood"][:], det.score_samples(X), rtol=1e-12)
    np.testing.assert_array_equal(got["flag"][:] == 1, det.predict(X) == -1)
    assert np.mean(got["flag"][:] == 1) == pytest.approx(0.02, abs=0.002)
