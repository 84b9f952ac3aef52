"""The statistics: Wilson interval, percentile_cont from histograms, funnel limits."""

import math
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


# Ten operations (months, event): failures at 3, 6, 6, 14 and 30; censored at 6 (tied with two
# failures: at risk at 6), 10, 20, 40 and 70. By hand: S(3) = 9/10; S(6) = 9/10 * 7/9 = 0.7;
# S(14) = 0.7 * 4/5 = 0.56; S(30) = 0.56 * 2/3. Greenwood sums d / (n (n - d)): by 12 months
# 1/90 + 2/63 = 3/70, by 24 + 1/20 = 13/140, by 60 + 1/6.
KM_EXAMPLE = [(3, True, 1), (6, True, 2), (6, False, 1), (10, False, 1), (14, True, 1), (20, False, 1),
              (30, True, 1), (40, False, 1), (70, False, 1)]
KM_BY_HAND = {12: (5, 3, 0.7, 3 / 70), 24: (3, 4, 0.56, 13 / 140), 60: (1, 5, 0.56 * 2 / 3, 13 / 140 + 1 / 6)}


def log_log_interval(survival, greenwood):
    spread = 1.959964 * greenwood ** 0.5 / -math.log(survival)
    return survival ** math.exp(spread), survival ** math.exp(-spread)


def test_kaplan_meier_of_a_hand_computed_example_with_ties_and_censoring():
    estimates = stats.kaplan_meier(KM_EXAMPLE, (12, 24, 60))
    for t, (at_risk, events, survival, greenwood) in KM_BY_HAND.items():
        low, high = log_log_interval(survival, greenwood)
        assert (estimates[t]["at_risk"], estimates[t]["events"]) == (at_risk, events)
        assert estimates[t]["estimate"] == pytest.approx(survival)
        assert (estimates[t]["ci_low"], estimates[t]["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    # worked out on paper at 12 months: 0.7 ** exp(+-1.96 * sqrt(3/70) / 0.35667)
    assert (estimates[12]["ci_low"], estimates[12]["ci_high"]) == (pytest.approx(0.32872, abs=1e-5),
                                                                   pytest.approx(0.89195, abs=1e-5))


def test_kaplan_meier_without_events_or_without_anyone_at_risk():
    estimates = stats.kaplan_meier([(13, False, 4), (30, False, 2)], (12, 24, 60))
    assert estimates[12] == {"at_risk": 6, "events": 0, "estimate": 1.0, "ci_low": None, "ci_high": None}
    assert estimates[24]["at_risk"] == 2
    assert estimates[60] == {"at_risk": 0, "events": 0, "estimate": None, "ci_low": None, "ci_high": None}
