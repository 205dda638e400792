"""The side-by-side benchmark of autoupdated and podman auto-update (docs/benchmarks.md)."""
