"""Statistical disclosure control of cross-centre reports: cell-key perturbation.

The method of the Australian Bureau of Statistics' TableBuilder and of the UK's 2021 Census
outputs (README "Privacy" has the sources):

- every operation carries a record key, a random integer 0..255 drawn once when it is stored
  and never shown (migration 0007);
- a count (operations, a numerator, a denominator, the n of a summary) has a cell key: the sum
  of the record keys of the operations it counts, mod 256;
- the published count is c + D[c][cell key], D the perturbation table below: noise in -2..+2,
  mean 0, never below 0, and 0 for a count of 0.

The noise is a function of the records counted, not of the query: the same operations get the
same figure in every report, grouping and filter that counts them (no averaging over repeated
or reworded queries), and two queries whose operations differ get unrelated noise, so their
difference is the difference of the true counts plus noise the asker cannot remove.

Then the primary rule: a published count of 1 .. threshold-1 is withheld. It is decided on the
published count, so the decision is, like the figure, the same wherever the same operations
are counted. Secondary (complementary) suppression is not needed: a withheld cell is no longer
the total minus the visible cells, since every one of them carries its own noise. A summary's
mean, median and quartiles need a published n of threshold + MAX_NOISE, so that they always
describe at least `threshold` values (registry.reports.service.enforce_primary).
"""

KEY_SPACE = 256        # record and cell keys are 0..255
MAX_NOISE = 2

# The perturbation table, as the number of the 256 cell keys that give each noise (an inverse
# cumulative distribution: keys are uniform, so a key picks noise v with probability n/256).
# A count of 1 cannot lose 2 (never negative), so its row is shifted to stay unbiased.
NOISE_KEYS = {
    0: {0: 256},                                        # zeros stay zero
    1: {-1: 90, 0: 102, 1: 38, 2: 26},                  # mean 0, variance 232/256
    "larger": {-2: 19, -1: 45, 0: 128, 1: 45, 2: 19},   # mean 0, variance 242/256
}


def _row(counts: dict) -> tuple:
    """D[c] as a tuple of 256 noises, indexed by the cell key."""
    assert sum(counts.values()) == KEY_SPACE
    row = []
    for noise, keys in sorted(counts.items()):
        row.extend([noise] * keys)
    return tuple(row)


PTABLE = {count: _row(counts) for count, counts in NOISE_KEYS.items()}


def noise_moments(count: int) -> tuple[float, float]:
    """Mean and variance of the noise added to `count` (keys uniform)."""
    counts = NOISE_KEYS[count if count in NOISE_KEYS else "larger"]
    mean = sum(v * n for v, n in counts.items()) / KEY_SPACE
    return mean, sum((v - mean) ** 2 * n for v, n in counts.items()) / KEY_SPACE


def perturb(count: int, key_sum: int) -> int:
    """The published form of `count`, whose records' keys sum to `key_sum`."""
    row = PTABLE[count if count in PTABLE else "larger"]
    return count + row[key_sum % KEY_SPACE]


def description(threshold: int) -> dict:
    """What a report says about the disclosure control applied to it."""
    return {
        "method": "cell-key perturbation",
        "max_noise": MAX_NOISE,
        "noise_variance": round(noise_moments(2)[1], 3),
        "threshold": threshold,
        "summary_min_n": threshold + MAX_NOISE,
        "rates": "computed from the published counts",
    }
