"""The update engine: one run of podman's auto-update as a plan (see run.py)."""

from autoupdated.engine.options import Options
from autoupdated.engine.ports import Adapters
from autoupdated.engine.run import Engine, run
from autoupdated.engine.task import Task
from autoupdated.errors import RunError
from autoupdated.model import Entry, RunResult

__all__ = ["Adapters", "Engine", "Entry", "Options", "RunError", "RunResult", "Task", "run"]
