"""Numerical checks of FID, KID, precision/recall, density/coverage, novelty and IS against
closed forms, brute-force answers and known failure cases."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import scipy.linalg
import torch
from threadpoolctl import threadpool_limits

from genlearn.metrics.frechet import (
    GaussianStats,
    _moments,
    fid_from_features,
    frechet_distance,
)
from genlearn.metrics.inception_score import inception_score
from genlearn.metrics.kid import kernel_inception_distance, polynomial_kernel
from genlearn.metrics.manifold import density_coverage, knn_radii, precision_recall
from genlearn.metrics.novelty import (
    nearest_neighbours,
    novelty,
    reference_distances,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One BLAS/OpenMP thread: these are small matrices, and on a busy shared machine spinning
    threads made a 300 x 300 `eigh` take a second instead of milliseconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(before)


def random_orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def spd(rng: np.random.Generator, eigenvalues: np.ndarray) -> np.ndarray:
    q = random_orthogonal(rng, len(eigenvalues))
    return (q * eigenvalues) @ q.T


def stats(mean: np.ndarray, cov: np.ndarray) -> GaussianStats:
    return GaussianStats(mean=mean, cov=cov, count=100)


def fid_sqrtm(ma: np.ndarray, ca: np.ndarray, mb: np.ndarray, cb: np.ndarray) -> float:
    """The textbook formula, trustworthy for well-conditioned covariances only."""
    cross = scipy.linalg.sqrtm(ca @ cb).real
    return float(np.sum((ma - mb) ** 2) + np.trace(ca) + np.trace(cb) - 2 * np.trace(cross))


# ---- Frechet distance -----------------------------------------------------------------------
@pytest.mark.parametrize(("n", "d"), [(500, 16), (40, 128), (300, 300)])
def test_fid_of_a_set_with_itself_is_zero_even_when_singular(n: int, d: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 3.0, d) + 5.0  # far from 0, uneven scales
    scale = float(np.trace(np.cov(x, rowvar=False)))
    fid, stderr = fid_from_features(x, x, bootstrap=0)
    assert abs(fid) <= 1e-6 * scale
    assert math.isnan(stderr)
    # The clamp at 0 could hide a negative bias; a tiny mean shift must come out exactly.
    shift = np.full(d, math.sqrt(1e-4 * scale / d))
    a = GaussianStats.from_features(x)
    b = GaussianStats(mean=a.mean + shift, cov=a.cov, count=n)
    assert frechet_distance(a, b) == pytest.approx(1e-4 * scale, abs=1e-9 * scale)


def test_frechet_distance_diagonal_closed_form() -> None:
    rng = np.random.default_rng(1)
    ma, mb = rng.normal(size=12), rng.normal(size=12)
    sa, sb = rng.uniform(0.1, 3, 12), rng.uniform(0.1, 3, 12)
    expected = np.sum((ma - mb) ** 2) + np.sum((sa - sb) ** 2)
    got = frechet_distance(stats(ma, np.diag(sa**2)), stats(mb, np.diag(sb**2)))
    assert got == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_non_commuting_matches_sqrtm() -> None:
    rng = np.random.default_rng(2)
    ca, cb = spd(rng, rng.uniform(0.5, 2, 10)), spd(rng, rng.uniform(0.2, 4, 10))
    assert not np.allclose(ca @ cb, cb @ ca)
    ma, mb = rng.normal(size=10), rng.normal(size=10)
    expected = fid_sqrtm(ma, ca, mb, cb)
    assert frechet_distance(stats(ma, ca), stats(mb, cb)) == pytest.approx(expected, rel=1e-10)
    # symmetric in its arguments although only one square root is taken
    assert frechet_distance(stats(mb, cb), stats(ma, ca)) == pytest.approx(expected, rel=1e-10)


def test_fid_from_samples_matches_closed_form_within_bootstrap_error() -> None:
    rng = np.random.default_rng(3)
    ca, cb = spd(rng, rng.uniform(0.5, 2, 8)), spd(rng, rng.uniform(0.5, 2, 8))
    ma, mb = np.zeros(8), np.full(8, 0.2)
    truth = fid_sqrtm(ma, ca, mb, cb)
    x = rng.multivariate_normal(ma, ca, 20_000)
    y = rng.multivariate_normal(mb, cb, 20_000).astype(np.float32)  # any float dtype
    fid, stderr = fid_from_features(torch.from_numpy(x), y, bootstrap=20)
    # the estimator's O(D/n) upward bias (~1e-3 here) is well inside 3 standard errors
    assert 0 < stderr < 0.1 * truth
    assert abs(fid - truth) <= 3 * stderr


def test_fid_bootstrap_error_matches_spread_over_independent_draws() -> None:
    rng = np.random.default_rng(4)
    ca, cb = spd(rng, rng.uniform(0.5, 2, 8)), spd(rng, rng.uniform(0.5, 2, 8))
    values, errors = [], []
    for repeat in range(30):
        x = rng.multivariate_normal(np.zeros(8), ca, 2000)
        y = rng.multivariate_normal(np.full(8, 0.2), cb, 2000)
        fid, stderr = fid_from_features(x, y, bootstrap=20, seed=repeat)
        values.append(fid)
        errors.append(stderr)
    ratio = float(np.mean(errors) / np.std(values, ddof=1))
    assert 1 / 1.5 < ratio < 1.5


def test_fid_with_cached_real_stats() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(400, 6)), rng.normal(0.3, 1.0, size=(300, 6))
    real_stats = GaussianStats.from_features(x)
    full, full_se = fid_from_features(x, y, bootstrap=200)
    cached, cached_se = fid_from_features(None, y, real_stats=real_stats, bootstrap=200)
    assert cached == pytest.approx(full, rel=1e-12)
    assert 0 < cached_se < full_se  # only the fake set is resampled
    with pytest.raises(ValueError):
        fid_from_features(None, y)


def test_moments_chunked_and_weighted_equal_numpy() -> None:
    rng = np.random.default_rng(6)
    x = torch.from_numpy(rng.normal(3.0, 2.0, size=(103, 9)))
    mean, cov = _moments(x, None, chunk=10)
    np.testing.assert_allclose(mean, x.numpy().mean(0), rtol=1e-13)
    np.testing.assert_allclose(cov, np.cov(x.numpy(), rowvar=False), rtol=1e-12)
    # bootstrap weights give exactly the moments of the resampled rows
    draw = rng.integers(0, 103, 103)
    mean, cov = _moments(x, np.bincount(draw, minlength=103), chunk=10)
    np.testing.assert_allclose(mean, x.numpy()[draw].mean(0), rtol=1e-13)
    np.testing.assert_allclose(cov, np.cov(x.numpy()[draw], rowvar=False), rtol=1e-12)


def _shared_basis_case(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(our FID, closed form) for covariances with the eigenvalues a, b in one random basis:
    then tr((S_a S_b)^1/2) = sum sqrt(a_i b_i) and FID = |dmu|^2 + sum (sqrt a_i - sqrt b_i)^2."""
    rng = np.random.default_rng(7)
    q = random_orthogonal(rng, len(a))
    ma, mb = rng.normal(size=len(a)), rng.normal(size=len(a))
    got = frechet_distance(stats(ma, (q * a) @ q.T), stats(mb, (q * b) @ q.T))
    expected = np.sum((ma - mb) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    return got, float(expected)


def test_fid_near_singular_rank5_with_jitter() -> None:
    a, b = np.full(64, 1e-12), np.full(64, 1e-12)
    a[:5], b[3:8] = [4, 3, 2, 1, 0.5], [1, 2, 3, 4, 5]  # rank 5 each, supports overlap in 2
    got, expected = _shared_basis_case(a, b)
    assert isinstance(got, float) and math.isfinite(got) and got >= 0
    assert got == pytest.approx(expected, rel=1e-10)


def test_fid_ill_conditioned() -> None:
    a = np.logspace(0, -10, 64)
    b = np.random.default_rng(8).permutation(a) * 2
    got, expected = _shared_basis_case(a, b)
    assert isinstance(got, float) and math.isfinite(got) and got >= 0
    assert got == pytest.approx(expected, rel=1e-10)


def test_fid_rank_deficient_non_commuting() -> None:
    # S_a = A A^T, S_b = B B^T of rank 5 in 64-D, different subspaces: the non-zero
    # eigenvalues of S_a S_b are those of (A^T B)(B^T A), so tr((S_a S_b)^1/2) is the sum of
    # the singular values of the small, well-conditioned 5 x 5 matrix A^T B.
    rng = np.random.default_rng(9)
    a_factor, b_factor = rng.normal(size=(64, 5)), rng.normal(size=(64, 5))
    ca, cb = a_factor @ a_factor.T, b_factor @ b_factor.T
    cross = np.linalg.svd(a_factor.T @ b_factor, compute_uv=False).sum()
    expected = np.trace(ca) + np.trace(cb) - 2 * cross
    got = frechet_distance(stats(np.zeros(64), ca), stats(np.zeros(64), cb))
    assert isinstance(got, float) and math.isfinite(got) and got >= 0
    assert got == pytest.approx(expected, rel=1e-10)


# ---- KID ------------------------------------------------------------------------------------
def raw_moments(mu: float, sigma: float) -> np.ndarray:
    """E[X], E[X^2], E[X^3] of N(mu, sigma^2)."""
    return np.array([mu, mu**2 + sigma**2, mu**3 + 3 * mu * sigma**2])


def cubic_mmd2(p: tuple[float, float], q: tuple[float, float]) -> float:
    # In 1-D the default kernel is k(x, y) = (xy + 1)^3 = x^3y^3 + 3x^2y^2 + 3xy + 1, so for
    # independent X, X' ~ P: E k(X, X') = m3^2 + 3 m2^2 + 3 m1^2 + 1 with mk = E[X^k], and
    # MMD^2 = E k(X,X') + E k(Y,Y') - 2 E k(X,Y) = (dm3)^2 + 3 (dm2)^2 + 3 (dm1)^2.
    d = raw_moments(*p) - raw_moments(*q)
    return float(d[2] ** 2 + 3 * d[1] ** 2 + 3 * d[0] ** 2)


def kid_repeats(p: tuple[float, float], q: tuple[float, float], repeats: int = 800):
    rng = np.random.default_rng(10)
    kids, errors, biased = [], [], []
    for _ in range(repeats):
        x, y = rng.normal(*p, size=(50, 1)), rng.normal(*q, size=(50, 1))
        kid, stderr = kernel_inception_distance(x, y)
        kids.append(kid)
        errors.append(stderr)
        kernel = [(u @ v.T + 1) ** 3 for u, v in ((x, x), (y, y), (x, y))]
        biased.append(kernel[0].mean() + kernel[1].mean() - 2 * kernel[2].mean())
    return np.array(kids), np.array(errors), np.array(biased)


def test_kid_is_unbiased_against_cubic_closed_form() -> None:
    p, q = (0.0, 1.0), (0.5, 1.0)
    kids, errors, _ = kid_repeats(p, q)
    sem = kids.std(ddof=1) / math.sqrt(len(kids))
    assert abs(kids.mean() - cubic_mmd2(p, q)) < 3 * sem
    # the first-order standard error describes the spread of a single estimate
    assert 1 / 1.5 < np.sqrt(np.mean(errors**2)) / kids.std(ddof=1) < 1.5


def test_kid_of_one_distribution_averages_zero_unlike_v_statistic() -> None:
    kids, _, biased = kid_repeats((0.0, 1.0), (0.0, 1.0))
    sem = kids.std(ddof=1) / math.sqrt(len(kids))
    assert abs(kids.mean()) < 3 * sem
    assert biased.mean() > 3 * biased.std(ddof=1) / math.sqrt(len(biased))  # V-stat is biased


def test_kid_chunks_match_brute_force() -> None:
    rng = np.random.default_rng(11)
    x, y = rng.normal(size=(37, 5)), rng.normal(0.4, 1.2, size=(23, 5))
    kxx, kyy, kxy = ((a @ b.T / 5 + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    np.testing.assert_allclose(polynomial_kernel(x, y).numpy(), kxy, rtol=1e-12, atol=1e-15)
    n, m = 37, 23
    within_x = (kxx.sum(1) - np.diag(kxx)) / (n - 1)
    within_y = (kyy.sum(1) - np.diag(kyy)) / (m - 1)
    mmd2 = within_x.mean() + within_y.mean() - 2 * kxy.mean()
    g_x, g_y = within_x - kxy.mean(1), within_y - kxy.mean(0)
    stderr = math.sqrt(4 * g_x.var(ddof=1) / n + 4 * g_y.var(ddof=1) / m)
    for chunk in (8, 4096):
        kid, kid_stderr = kernel_inception_distance(torch.from_numpy(x).float(), y, chunk=chunk)
        assert kid == pytest.approx(mmd2, rel=1e-6)  # x went through float32
        assert kid_stderr == pytest.approx(stderr, rel=1e-5)


# ---- precision / recall, density / coverage -------------------------------------------------
def test_manifold_metrics_of_identical_sets() -> None:
    x = torch.from_numpy(np.random.default_rng(12).normal(size=(600, 16)))
    assert precision_recall(x, x, k=3) == {
        "precision": 1.0,
        "precision_stderr": 0.0,
        "recall": 1.0,
        "recall_stderr": 0.0,
    }
    figures = density_coverage(x, x, k=5)
    # every real ball holds its centre and its 5 nearest neighbours (on its boundary)
    assert figures["density"] == pytest.approx(6 / 5, rel=1e-12)
    assert figures["coverage"] == 1.0


def test_manifold_metrics_of_one_distribution() -> None:
    rng = np.random.default_rng(13)
    real, fake = rng.normal(size=(1000, 16)), rng.normal(size=(1000, 16))
    figures = density_coverage(real, fake, k=5)
    assert abs(figures["density"] - 1) < 3 * figures["density_stderr"] + 0.02
    assert 0.9 < figures["coverage"] < 1.0
    pr = precision_recall(real, fake, k=3)
    assert 0.6 < pr["precision"] < 1 and 0.6 < pr["recall"] < 1
    assert 0.005 < pr["precision_stderr"] < 0.03


def test_precision_and_recall_fall_as_the_fake_set_shifts() -> None:
    rng = np.random.default_rng(14)
    real, fake = rng.normal(size=(800, 16)), rng.normal(size=(800, 16))
    results = [precision_recall(real, fake + shift, k=3) for shift in (0.0, 0.3, 0.6, 1.0)]
    for key in ("precision", "recall"):
        values = [r[key] for r in results]
        assert all(a > b for a, b in zip(values, values[1:], strict=False)), (key, values)
        assert values[-1] < 0.5 * values[0]


def test_recall_and_coverage_fall_when_the_fake_set_collapses_to_one_mode() -> None:
    rng = np.random.default_rng(15)
    centres = rng.normal(size=(4, 16)) * 6
    real = centres[rng.integers(0, 4, 1000)] + rng.normal(size=(1000, 16))
    diverse = centres[rng.integers(0, 4, 1000)] + rng.normal(size=(1000, 16))
    collapsed = centres[0] + rng.normal(size=(1000, 16))
    good_pr, good_dc = precision_recall(real, diverse), density_coverage(real, diverse)
    bad_pr, bad_dc = precision_recall(real, collapsed), density_coverage(real, collapsed)
    assert bad_pr["recall"] < 0.4 < good_pr["recall"]
    assert bad_dc["coverage"] < 0.4 < 0.9 < good_dc["coverage"]
    assert bad_pr["precision"] > 0.6  # what it does draw still looks real


def test_knn_radii_brute_force() -> None:
    x = np.random.default_rng(16).normal(size=(50, 3))
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_allclose(knn_radii(x, 4).numpy(), np.sort(d, 1)[:, 3], rtol=1e-10)


# ---- novelty --------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk", [7, 1 << 16])  # many query blocks; many reference blocks
def test_nearest_neighbours_brute_force(chunk: int) -> None:
    rng = np.random.default_rng(17)
    queries, refs = rng.normal(size=(300, 6)), rng.normal(size=(600, 6))
    d = np.linalg.norm(queries[:, None] - refs[None], axis=-1)
    dist, idx = nearest_neighbours(queries, torch.from_numpy(refs).float(), 3, chunk=chunk)
    np.testing.assert_array_equal(idx.numpy(), np.argsort(d, 1)[:, :3])
    np.testing.assert_allclose(dist.numpy(), np.sort(d, 1)[:, :3], rtol=1e-6)

    d = np.linalg.norm(refs[:, None] - refs[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    dist, idx = nearest_neighbours(refs, refs, 2, exclude_self=True, chunk=chunk)
    np.testing.assert_array_equal(idx.numpy(), np.argsort(d, 1)[:, :2])
    np.testing.assert_allclose(dist.numpy(), np.sort(d, 1)[:, :2], rtol=1e-10)


def test_reference_distances_are_leave_one_out_over_the_whole_set() -> None:
    train = np.random.default_rng(18).normal(size=(400, 5))
    d = np.linalg.norm(train[:, None] - train[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    loo = d.min(1)
    subset = reference_distances(train, max_points=100, seed=3).numpy()
    assert len(subset) == 100
    assert np.all(np.isin(np.round(subset, 9), np.round(loo, 9)))
    np.testing.assert_allclose(reference_distances(train).numpy(), loo, rtol=1e-10)


def curved_manifold(rng: np.random.Generator, n: int) -> np.ndarray:
    """Points of a curved 4-D manifold in 64-D plus isotropic noise."""
    lift = np.random.default_rng(0)  # the same manifold for every call
    a, w = lift.normal(size=(4, 16)), lift.normal(size=(16, 64)) / 4
    z = rng.uniform(-1, 1, size=(n, 4))
    return np.sin(2 * z @ a) @ w + 0.02 * rng.normal(size=(n, 64))


def test_near_copies_of_a_synthetic_training_set() -> None:
    rng = np.random.default_rng(19)
    train, fresh = curved_manifold(rng, 3000), curved_manifold(rng, 1000)
    reference = reference_distances(train)
    typical = float(np.median(reference.numpy()))
    noise = rng.normal(size=(500, 64)) * 0.05 * typical / 8  # norm ~5% of a typical NN gap
    copies = novelty(train[:500], train, reference=reference)
    noisy = novelty(train[500:1000] + noise, train, reference=reference)
    new = novelty(fresh, train, reference=reference)
    assert copies.near_copy_share == 1.0
    assert noisy.near_copy_share >= 0.95
    assert new.near_copy_share <= 0.03
    assert torch.equal(copies.nearest_index, torch.arange(500))
    assert new.novelty_ratio == pytest.approx(1.0, abs=0.1)
    assert copies.novelty_ratio < 1e-6 and noisy.novelty_ratio < 0.2
    figures = new.as_dict("samples/")
    assert figures["samples/near_copy_share"] == new.near_copy_share
    assert all(type(v) is float for v in figures.values())
    assert int(new.near_copies().sum()) == round(new.near_copy_share * 1000)


def test_fresh_samples_are_near_copies_at_the_chosen_rate_and_errors_are_calibrated() -> None:
    rng = np.random.default_rng(20)
    ratios, ratio_errors, shares = [], [], []
    for _ in range(40):
        report = novelty(rng.normal(size=(500, 8)), rng.normal(size=(1000, 8)), quantile=0.05)
        ratios.append(report.novelty_ratio)
        ratio_errors.append(report.novelty_ratio_stderr)
        shares.append(report.near_copy_share)
    # a model that never copies gets `quantile` near-copies by construction
    assert abs(np.mean(shares) - 0.05) < 3 * np.std(shares, ddof=1) / math.sqrt(40)
    assert abs(np.mean(ratios) - 1) < 3 * np.std(ratios, ddof=1) / math.sqrt(40)
    assert 1 / 1.5 < np.sqrt(np.mean(np.square(ratio_errors))) / np.std(ratios, ddof=1) < 1.5


def test_near_copies_of_mnist(shared_data) -> None:
    from genlearn.data import get_dataset

    mnist = get_dataset("mnist")
    train = mnist.train_images[:5000].flatten(1).double() / 255
    test = mnist.test_images[:500].flatten(1).double() / 255
    reference = reference_distances(train, max_points=2000)
    noisy = train[:500] + 0.03 * torch.randn(500, 784, generator=torch.Generator().manual_seed(0))
    noisy_report = novelty(noisy, train, reference=reference)
    test_report = novelty(test, train, reference=reference)
    assert noisy_report.near_copy_share >= 0.95
    assert test_report.near_copy_share <= 0.05
    assert test_report.novelty_ratio > 0.9


# ---- Inception Score ------------------------------------------------------------------------
def test_inception_score_of_uninformative_predictions_is_one() -> None:
    assert inception_score(torch.zeros(100, 10))[0] == pytest.approx(1.0, abs=1e-12)
    same = np.tile(np.random.default_rng(22).normal(size=10), (100, 1))  # identical rows
    score, stderr = inception_score(same, splits=5)
    assert score == pytest.approx(1.0, abs=1e-12) and stderr == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("confidence", [math.inf, 60.0])
def test_inception_score_of_confident_even_predictions_is_the_class_count(
    confidence: float,
) -> None:
    logits = torch.full((800, 8), -confidence, dtype=torch.float32)
    logits[torch.arange(800), torch.arange(800) % 8] = 0.0  # each split holds every class 10x
    score, stderr = inception_score(logits, splits=10)
    assert score == pytest.approx(8.0, rel=1e-12)
    assert stderr == pytest.approx(0.0, abs=1e-10)


def test_inception_score_matches_direct_formula() -> None:
    logits = np.random.default_rng(21).normal(size=(300, 6)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = []
    for part in np.array_split(p, 3):
        kl = (part * (np.log(part) - np.log(part.mean(0)))).sum(1).mean()
        scores.append(math.exp(kl))
    score, stderr = inception_score(logits, splits=3)
    assert score == pytest.approx(np.mean(scores), rel=1e-12)
    assert stderr == pytest.approx(np.std(scores, ddof=1) / math.sqrt(3), rel=1e-9)
