"""Reimplemented methods: E4 (attention early exit + just-in-time DVFS profiler) and SB3 training."""
