"""The update engine: one run of podman's auto-update as a plan (see run.py)."""

from autoupdated.engine.run import Adapters, Engine, Entry, Options, RunError, RunResult, Task, run

__all__ = ["Adapters", "Engine", "Entry", "Options", "RunError", "RunResult", "Task", "run"]
