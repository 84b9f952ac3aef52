"""The statistics: Wilson interval, percentile_cont from histograms, funnel limits."""

from fractions import Fraction
from statistics import NormalDist

import pytest

from registry.reports import stats


def test_wilson_interval_of_a_known_case():
    low, high = stats.wilson_interval(3, 10)
    assert low == pytest.approx(0.10779, abs=1e-5)
    assert high == pytest.approx(0.60322, abs=1e-5)


def test_wilson_interval_at_the_edges():
    assert stats.wilson_interval(0, 10)[0] == 0.0
    assert stats.wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert stats.wilson_interval(0, 0) is None


@pytest.mark.parametrize("n", [1, 3, 7, 19, 161, 1000])
def test_wilson_bounds_are_exactly_0_and_1_at_none_and_all(n):
    # floating point used to give ci_low 2.8e-17 for 0 of 7
    assert stats.wilson_interval(0, n)[0] == 0
    assert stats.wilson_interval(n, n)[1] == 1


def test_quantiles_interpolate_like_percentile_cont():
    counts = [(1.0, 1), (2.0, 1), (10.0, 2)]  # 1, 2, 10, 10
    assert stats.quantile_from_counts(counts, Fraction(1, 2)) == 6.0
    assert stats.quantile_from_counts(counts, Fraction(1, 4)) == 1.75
    assert stats.quantile_from_counts(counts, Fraction(3, 4)) == 10.0


def test_hirabayashi_recovery():
    assert stats.hirabayashi_recovery(10, 14) == Fraction(400, 7)
    assert stats.hirabayashi_recovery(17, 17) is None


def test_funnel_limits_bracket_the_pooled_rate_and_narrow_with_n():
    previous = None
    for n in (10, 100, 1000, 100000):
        limits = stats.funnel_limits(0.1, n)
        assert limits["lower_998"] <= limits["lower_95"] <= 0.1 <= limits["upper_95"] <= limits["upper_998"]
        if previous:
            assert limits["upper_95"] - limits["lower_95"] < previous
        previous = limits["upper_95"] - limits["lower_95"]


def test_exact_funnel_limit_agrees_with_the_normal_approximation_for_large_n():
    n, p = 20000, 0.1  # variance 1800: exact binomial
    exact = stats.funnel_limit(p, n, 0.975)
    normal = p + NormalDist().inv_cdf(0.975) * (p * (1 - p) / n) ** 0.5
    assert exact == pytest.approx(normal, rel=2e-3)


def test_funnel_positions():
    limits = stats.funnel_limits(0.1, 100)
    assert stats.funnel_position(0.5, limits) == "above_99.8"
    assert stats.funnel_position(0.1, limits) == "within"
    assert stats.funnel_position(0.0, limits) == "below_99.8"
    assert stats.funnel_position(0.03, limits) == "below_95"
