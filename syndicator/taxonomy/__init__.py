"""Taxonomy terms, the one name normaliser, the territoires and the matching rule."""
