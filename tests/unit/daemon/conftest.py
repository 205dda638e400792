"""Fixtures shared by the daemon tests: `start` (the real daemon object with a fake engine)."""

from tests.unit.daemon.test_service import start  # noqa: F401
