"""Datasets, image loading and the preprocessing that every artifact reuses."""
