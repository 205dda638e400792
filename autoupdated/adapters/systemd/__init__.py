"""systemd over D-Bus: pure messages (messages.py) and the one connection (bus.py)."""
