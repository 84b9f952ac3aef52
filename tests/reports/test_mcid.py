"""The MCID table and per-pair rules the per-instrument outcomes figures are to count with."""

import pytest

from registry.reports import mcid
from registry.vocabulary import EQ5D_VALUE_SET, SCORE_SCALES


def test_every_mcid_names_a_known_scale_and_a_source():
    for key, (threshold, direction, source) in mcid.MCID.items():
        assert key in SCORE_SCALES
        low, high, _ = SCORE_SCALES[key]
        assert 0 < threshold < high - low
        assert direction in (mcid.HIGHER_IS_BETTER, mcid.LOWER_IS_BETTER)
        assert source
        assert direction == mcid.direction_of(key[0])
    for value_set, (threshold, direction, source) in mcid.EQ5D5L_MCID.items():
        assert value_set in EQ5D_VALUE_SET and 0 < threshold < 2 and source
        assert direction == mcid.direction_of("eq5d5l_index")


def test_higher_is_better_scores_reach_the_mcid_by_rising():
    assert mcid.reaches_mcid("mjoa", "18-point", 10, 12) is True
    assert mcid.reaches_mcid("mjoa", "18-point", 10, 11) is False
    assert mcid.reaches_mcid("mjoa", "18-point", 12, 10) is False
    assert mcid.reaches_mcid("joa", "17-point", 10, 12.5) is True
    assert mcid.reaches_mcid("joa", "17-point", 10, 12) is False


def test_lower_is_better_scores_reach_the_mcid_by_falling():
    assert mcid.reaches_mcid("ndi", "50-point", 30, 22.5) is True
    assert mcid.reaches_mcid("ndi", "50-point", 30, 23) is False
    assert mcid.reaches_mcid("ndi", "50-point", 22, 30) is False
    assert mcid.reaches_mcid("pain_nrs", "11-point", 7, 5) is True
    assert mcid.reaches_mcid("pain_nrs", "11-point", 5, 7) is False
    assert mcid.reaches_mcid("odi", "2.1a", 50, 37.2) is True
    assert mcid.reaches_mcid("odi", "2.1a", 50, 37.3) is False
    assert mcid.change("odi", "2.0", 50, 40) == 10


def test_eq5d_index_at_its_threshold_despite_float_arithmetic():
    assert mcid.reaches_mcid("eq5d5l_index", "5L", 0.6, 0.663, value_set="england") is True
    assert mcid.reaches_mcid("eq5d5l_index", "5L", 0.6, 0.662, value_set="england") is False


def test_an_eq5d_index_has_the_mcid_of_its_value_set_only():
    # another country's tariff is another scale: no MCID the registry is confident of
    assert mcid.reaches_mcid("eq5d5l_index", "5L", 0.6, 0.9, value_set="japan") is None
    assert mcid.reaches_mcid("eq5d5l_index", "5L", 0.6, 0.9) is None
    assert mcid.change("eq5d5l_index", "5L", 0.6, 0.5) == pytest.approx(-0.1)


def test_a_version_without_a_confident_mcid_has_no_share():
    assert mcid.reaches_mcid("joa", "29-point", 10, 25) is None


def test_recovery_rate_is_per_version_over_its_own_full_score():
    assert mcid.recovery_rate("joa", "17-point", 9, 13) == pytest.approx(50.0)
    assert mcid.recovery_rate("joa", "29-point", 9, 19) == pytest.approx(50.0)
    assert mcid.recovery_rate("joa", "17-point", 17, 17) is None
    assert mcid.recovery_rate("mjoa", "18-point", 9, 13) is None
