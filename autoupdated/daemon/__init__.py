"""The daemon: `autoupdated run`."""
