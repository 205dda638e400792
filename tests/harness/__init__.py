"""Test harness: real registries, a real podman service and a booted systemd machine."""
