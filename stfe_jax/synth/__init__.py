"""Synthetic traffic: packet builders, capture writers and a generated MAWI-like day.

Everything here is synthetic and made for tests and for the embedded default run.
"""
