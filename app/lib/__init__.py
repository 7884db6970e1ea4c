"""Shared building blocks: auth, errors, schemas, pagination, crypto."""
