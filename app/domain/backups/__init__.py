"""Backup health, restore tests and erasure replay."""
