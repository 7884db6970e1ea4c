"""A chat application without foreign-key constraints: scaffold, export, scrubbing."""
