"""The deoss command."""
