"""Aggregate reports across centres: complications, fusion and implants, outcomes, centres
(funnel plot) and data completeness, with Wilson intervals and disclosure control."""
