"""The manifest registry: register, list, fetch and re-validate manifests of target systems."""
