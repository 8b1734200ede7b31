"""Turning items into numbers: embedders, Matryoshka prefixes, pruning scores."""
