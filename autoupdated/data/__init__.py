"""Files `autoupdated install` puts in place: the units, the catalog, the example configuration.

Copies of systemd/ and config/ (tests/unit/test_install.py keeps them identical).
"""
