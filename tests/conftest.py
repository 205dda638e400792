"""Shared pytest configuration: fixtures come from the harness plugins."""

pytest_plugins = [
    "tests.harness.registry_fixtures",
    "tests.harness.machine_fixtures",
]
