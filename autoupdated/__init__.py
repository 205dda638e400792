"""autoupdated: keeps Podman containers under systemd up to date, safely."""

__version__ = "0.1.0"
