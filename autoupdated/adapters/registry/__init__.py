"""Registries: auth files, registries.conf and certs.d, WWW-Authenticate, the HTTP client."""
