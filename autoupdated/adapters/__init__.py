"""Adapters: the only modules that talk to podman, systemd, registries, journald, SQLite and sockets."""
