"""Turning numbers into decisions: dedup, pruning policies, active learning."""
