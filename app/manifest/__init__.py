"""Manifest model, loading, validation and the subject graph (pure, no HTTP)."""
