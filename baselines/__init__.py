"""Baseline governors: Linux defaults, oracles, zTT, Ring-DVFS."""
