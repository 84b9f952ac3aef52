"""The statistics of the reports: pure functions, no database.

- `wilson_interval`: 95 % Wilson score interval of a proportion (z = 1.959964).
- `quantile_from_counts`: PostgreSQL's percentile_cont (linear interpolation between the
  order statistics at (N - 1) * q) over a histogram of exact values.
- `funnel_limit`: control limit of a funnel plot by the exact binomial with interpolation
  (Spiegelhalter, Statistics in Medicine 2005;24:1185, appendix A.1.1), switching to the
  normal approximation when the binomial is wide (n·p·(1-p) > 2500), where the two agree.
"""

import bisect
import itertools
import math
from fractions import Fraction
from statistics import NormalDist

Z95 = 1.959964
FUNNEL_PROBABILITIES = {"95": 0.95, "998": 0.998}  # 998: 99.8 %


def wilson_interval(numerator: int, denominator: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of numerator/denominator; None when the denominator is 0."""
    if denominator <= 0:
        return None
    n = denominator
    p = numerator / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # At 0 of n and n of n the bound is exactly 0 (or 1); floating point leaves 1e-17.
    low = 0.0 if numerator == 0 else max(0.0, centre - half)
    high = 1.0 if numerator == n else min(1.0, centre + half)
    return low, high


def proportion(numerator: int, denominator: int) -> dict:
    """numerator, denominator, rate and Wilson 95 % interval, as the reports show them."""
    interval = wilson_interval(numerator, denominator)
    return {
        "numerator": numerator,
        "denominator": denominator,
        "rate": numerator / denominator if denominator else None,
        "ci_low": interval[0] if interval else None,
        "ci_high": interval[1] if interval else None,
    }


def quantile_from_counts(counts: list[tuple], q: Fraction, cumulative: list[int] | None = None):
    """percentile_cont(q) of a multiset given as sorted (value, count) pairs with count > 0.

    Float values (integers and half points, as the registry stores them) are interpolated in
    floating point, which is exact for them; Fractions (recovery rates) exactly. None when empty.
    `cumulative` (running totals of the counts) may be passed to save recomputing it.
    """
    if cumulative is None:
        cumulative = list(itertools.accumulate(count for _, count in counts))
    total = cumulative[-1] if cumulative else 0
    if total == 0:
        return None
    position = q * (total - 1)
    lower = math.floor(position)
    fraction = position - lower
    low_value = counts[bisect.bisect_right(cumulative, lower)][0]
    if fraction == 0:
        return float(low_value)
    high_value = counts[bisect.bisect_right(cumulative, lower + 1)][0]
    if isinstance(low_value, Fraction):
        return float(low_value + fraction * (high_value - low_value))
    return low_value + float(fraction) * (high_value - low_value)


def summary_from_counts(counts: list[tuple]) -> dict:
    """n, mean, median, first and third quartile of a histogram of (value, count) pairs.

    Values are floats holding integers or half points (sums stay exact in a double far beyond
    any registry's size), or Fractions.
    """
    counts = sorted(pair for pair in counts if pair[1])
    cumulative = list(itertools.accumulate(count for _, count in counts))
    n = cumulative[-1] if cumulative else 0
    if n == 0:
        return {"n": 0, "mean": None, "median": None, "q1": None, "q3": None}
    total = sum(value * count for value, count in counts)
    return {
        "n": n,
        "mean": float(total / n) if isinstance(total, Fraction) else total / n,
        "median": quantile_from_counts(counts, Fraction(1, 2), cumulative),
        "q1": quantile_from_counts(counts, Fraction(1, 4), cumulative),
        "q3": quantile_from_counts(counts, Fraction(3, 4), cumulative),
    }


def hirabayashi_recovery(preop, latest) -> Fraction | None:
    """JOA recovery rate (latest - preop) / (17 - preop) x 100, exact; None when preop is 17."""
    preop, latest = Fraction(preop), Fraction(latest)
    if preop >= 17:
        return None
    return (latest - preop) / (17 - preop) * 100


def funnel_limit(pooled_rate: float, n: int, probability: float) -> float | None:
    """The funnel-plot limit at cumulative `probability` (e.g. 0.975 for the upper 95 % limit).

    Exact binomial B(n, p) with interpolation: r is the smallest count with P(X <= r) >= probability,
    rho = (P(X <= r) - probability) / P(X = r), limit = (r - rho) / n.
    """
    return _funnel_limits(pooled_rate, n, [probability])[0]


def _funnel_limits(p: float | None, n: int, probabilities: list[float]) -> list[float | None]:
    """funnel_limit for several probabilities in one walk along the binomial distribution."""
    if n <= 0 or p is None:
        return [None] * len(probabilities)
    if p <= 0.0:
        return [0.0] * len(probabilities)
    if p >= 1.0:
        return [1.0] * len(probabilities)
    variance = n * p * (1 - p)
    if variance > 2500:
        return [min(1.0, max(0.0, p + NormalDist().inv_cdf(a) * math.sqrt(p * (1 - p) / n)))
                for a in probabilities]
    sd = math.sqrt(variance)
    low = max(0, math.floor(n * p - 12 * sd - 10))
    high = min(n, math.ceil(n * p + 12 * sd + 10))
    # P(X = low) once, then the recurrence P(X = r + 1) = P(X = r) (n - r) / (r + 1) p / (1 - p)
    mass = math.exp(math.lgamma(n + 1) - math.lgamma(low + 1) - math.lgamma(n - low + 1)
                    + low * math.log(p) + (n - low) * math.log1p(-p))
    odds = p / (1 - p)
    order = sorted(range(len(probabilities)), key=lambda i: probabilities[i])
    limits = [1.0] * len(probabilities)
    cumulative, pending = 0.0, 0
    for r in range(low, high + 1):
        cumulative += mass
        while pending < len(order) and cumulative >= probabilities[order[pending]]:
            a = probabilities[order[pending]]
            rho = (cumulative - a) / mass if mass > 0 else 0.0
            limits[order[pending]] = min(1.0, max(0.0, (r - rho) / n))
            pending += 1
        if pending == len(order):
            break
        mass *= (n - r) / (r + 1) * odds
    return limits


def funnel_limits(pooled_rate: float | None, n: int) -> dict:
    """Lower and upper 95 % and 99.8 % (lower_998, upper_998) funnel limits for a denominator n."""
    names, probabilities = [], []
    for name, coverage in FUNNEL_PROBABILITIES.items():
        tail = (1 - coverage) / 2
        names += [f"lower_{name}", f"upper_{name}"]
        probabilities += [tail, 1 - tail]
    return dict(zip(names, _funnel_limits(pooled_rate, n, probabilities)))


def funnel_position(rate: float | None, limits: dict) -> str | None:
    """Where a centre's rate falls: above_99.8, above_95, within, below_95 or below_99.8."""
    if rate is None or limits.get("upper_95") is None:
        return None
    if rate > limits["upper_998"]:
        return "above_99.8"
    if rate > limits["upper_95"]:
        return "above_95"
    if rate < limits["lower_998"]:
        return "below_99.8"
    if rate < limits["lower_95"]:
        return "below_95"
    return "within"


# --- Kaplan-Meier ---------------------------------------------------------------------------

def kaplan_meier(observations, times, z: float = Z95) -> dict:
    """The Kaplan-Meier estimate of freedom from the event at each of `times`.

    `observations`: (time, event, count) triples (event true: the event at that time; false:
    censored then); at one time, events come before censorings (a subject censored at t was
    at risk at t). Returns {t: {"at_risk", "events", "estimate", "ci_low", "ci_high"}}:
    at_risk the number still observed at t (time >= t), events those by t. The 95 % interval
    is Greenwood's variance on the log(-log) scale (Kalbfleisch and Prentice, The Statistical
    Analysis of Failure Time Data, 1980; Greenwood, Rep Public Health Med Subj 1926;33):
    S ** exp(+-z * sqrt(sum d / (n (n - d))) / |log S|). Without an event by t (S = 1) or after
    all failed (S = 0) the interval is not defined (None); with nobody at risk at t, nothing is.
    """
    by_time = {}
    for time, event, count in observations:
        deaths, censored = by_time.get(time, (0, 0))
        by_time[time] = (deaths + count, censored) if event else (deaths, censored + count)
    ordered = sorted(by_time.items())
    total = sum(d + c for _, (d, c) in ordered)
    result = {}
    for t in times:
        at_risk, survival, greenwood, events, remaining = 0, 1.0, 0.0, 0, total
        for time, (deaths, censored) in ordered:
            if time > t:
                break
            if deaths:
                survival *= 1 - deaths / remaining
                greenwood += deaths / (remaining * (remaining - deaths)) if remaining > deaths else math.inf
                events += deaths
            remaining -= deaths + censored
        at_risk = sum(d + c for time, (d, c) in ordered if time >= t)
        if at_risk == 0:
            result[t] = {"at_risk": 0, "events": events, "estimate": None, "ci_low": None, "ci_high": None}
            continue
        low = high = None
        if 0 < survival < 1:
            spread = z * math.sqrt(greenwood) / abs(math.log(survival))
            low, high = survival ** math.exp(spread), survival ** math.exp(-spread)
        result[t] = {"at_risk": at_risk, "events": events, "estimate": survival, "ci_low": low, "ci_high": high}
    return result
