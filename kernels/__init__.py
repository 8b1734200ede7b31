"""Fused scoring kernels (Triton on GPU), each with a torch reference.

Imports nothing of thresher.
"""
