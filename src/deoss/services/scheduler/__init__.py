"""The scheduler service: checks, codes, places and tags uploads (docs/services.md)."""
