"""Minimal clinically important differences (MCID) the outcomes report will count against.

Not yet wired into the report builder: this is the table and the per-pair rule the
per-instrument outcomes figures are to use (issue 15). A pair is one operation's baseline and
follow-up value on the same instrument, the same version, (pain NRS) the same site and
(EQ-5D-5L) the same value set: an index is on its country's tariff, so two value sets are two
scales, never paired, and each has its own MCID.
"""
from types import MappingProxyType

HIGHER_IS_BETTER, LOWER_IS_BETTER = "higher", "lower"

# (instrument, version) -> (MCID in the version's units, which direction is improvement, source).
# A version missing here has no MCID the registry is confident of: its change is reported, its
# share reaching an MCID is not.
MCID = MappingProxyType({
    ("joa", "17-point"): (2.5, HIGHER_IS_BETTER,
                          "Kato et al., Spine 2019;44(10):691 (JOA in degenerative cervical myelopathy)"),
    ("mjoa", "18-point"): (2, HIGHER_IS_BETTER,
                           "Tetreault et al., Spine 2015;40(21):1653 (mJOA in degenerative cervical myelopathy)"),
    ("ndi", "50-point"): (7.5, LOWER_IS_BETTER,
                          "Carreon et al., Spine J 2010;10(6):469 (after cervical fusion)"),
    ("ndi", "percent"): (15, LOWER_IS_BETTER,
                         "Carreon et al., Spine J 2010;10(6):469 (7.5 of 50 points)"),
    ("odi", "2.0"): (12.8, LOWER_IS_BETTER, "Copay et al., Spine J 2008;8(6):968"),
    ("odi", "2.1a"): (12.8, LOWER_IS_BETTER, "Copay et al., Spine J 2008;8(6):968"),
    ("odi", None): (12.8, LOWER_IS_BETTER, "Copay et al., Spine J 2008;8(6):968"),
    ("pain_nrs", "11-point"): (2, LOWER_IS_BETTER, "Farrar et al., Pain 2001;94(2):149"),
})

# EQ-5D-5L index: the MCID of each value set (the index's scale); a value set missing here has
# its change reported, not its share reaching an MCID.
EQ5D5L_MCID = MappingProxyType({
    "england": (0.063, HIGHER_IS_BETTER,
                "McClure et al., Value Health 2017;20(4):644 (instrument-defined MID, England value set)"),
})


def mcid_of(instrument, version, value_set=None):
    """(threshold, direction, source) of a score, or None when the registry has no MCID for it."""
    if instrument == "eq5d5l_index":
        return EQ5D5L_MCID.get(value_set)
    return MCID.get((instrument, version))


# Hirabayashi's recovery rate, (follow-up - baseline) / (full score - baseline), per version: the
# 17-point cervical JOA (Hirabayashi et al., Spine 1981) and, as the lumbar literature computes
# it, the 29-point lumbar JOA. Never across versions.
RECOVERY_FULL_SCORE = MappingProxyType({("joa", "17-point"): 17, ("joa", "29-point"): 29})


def direction_of(instrument):
    """Which way an instrument improves (every version and value set alike)."""
    return LOWER_IS_BETTER if instrument in ("ndi", "odi", "pain_nrs") else HIGHER_IS_BETTER


def change(instrument, version, baseline, follow_up):
    """Follow-up minus baseline, signed so that a positive change is an improvement."""
    direction = direction_of(instrument)
    difference = follow_up - baseline
    return difference if direction == HIGHER_IS_BETTER else -difference


def reaches_mcid(instrument, version, baseline, follow_up, value_set=None):
    """True/False whether the pair improved by at least the MCID; None without an MCID."""
    known = mcid_of(instrument, version, value_set)
    if known is None:
        return None
    threshold = known[0]
    # rounded: 7.5 - 0 and 0.063 must compare exactly despite float arithmetic
    return round(change(instrument, version, baseline, follow_up), 9) >= threshold


def recovery_rate(instrument, version, baseline, follow_up):
    """Hirabayashi's recovery rate in %, or None (no full score for the version, or baseline at it)."""
    full = RECOVERY_FULL_SCORE.get((instrument, version))
    if full is None or baseline >= full:
        return None
    return 100 * (follow_up - baseline) / (full - baseline)
