"""Beam plumbing and clip-level aggregation."""
