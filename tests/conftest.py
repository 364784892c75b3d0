"""Shared test settings."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

from deoss.runtime import tune_allocator

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=50
)
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

# The processes under test run with the tuned allocator (deoss.runtime); so do the tests.
tune_allocator()
