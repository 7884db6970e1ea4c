"""Domain areas, each with controllers, services and schemas."""
