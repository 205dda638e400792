import asyncio
import sys

from autoupdated.adapters.controlstore import ControlStore
from autoupdated.adapters.hooks import HookRunner
from autoupdated.controls.model import Hook, HookRun, Waiting


def test_first_seen_is_kept_and_approvals_and_holds_are_cleared_when_done(tmp_path):
    store = ControlStore(tmp_path / "history.db")
    assert store.first_seen("r/a:latest", "sha256:n", 100.0) == 100.0
    assert store.first_seen("r/a:latest", "sha256:n", 200.0) == 100.0, "the first time stays"
    store.waiting(Waiting("a", "u.service", "r/a:latest", "sha256:n", "approval", "why"))
    store.approve("a", "sha256:n")
    again = ControlStore(tmp_path / "history.db")
    assert [w.container for w in again.held()] == ["a"] and again.approved("a") == "sha256:n"
    again.done("a")
    assert store.held() == [] and store.approved("a") is None


def test_a_hook_gets_its_environment_and_its_output_and_exit_code_are_kept():
    script = "import os, sys; print(os.environ['AUTOUPDATED_CONTAINER']); sys.exit(3)"
    result = asyncio.run(HookRunner().run(Hook("h", (sys.executable, "-c", script)), {"AUTOUPDATED_CONTAINER": "db"}))
    assert result.exit_code == 3 and result.output == "db\n" and not result.ok


def test_a_hook_past_its_timeout_is_killed():
    hook = Hook("slow", (sys.executable, "-c", "import time; time.sleep(30)"), timeout=0.5)
    result = asyncio.run(HookRunner().run(hook, {}))
    assert result.exit_code is None and "timed out" in result.error


def test_a_hook_that_cannot_start_says_so():
    result = asyncio.run(HookRunner().run(Hook("x", ("/nonexistent/hook",)), {}))
    assert result.exit_code is None and "could not start" in result.error


def test_hook_runs_are_kept_in_the_history_database_with_their_output(tmp_path):
    store = ControlStore(tmp_path / "history.db")
    store.hook_ran(HookRun("post_update", "tell", "web", "web.service", "r/web:1", "sha256:n", 1, "down\n", "", 0.2))
    dump = HookRun("pre_update", "dump", "db", "db.service", "r/db:1", "sha256:m", None, "x" * 100_000, "timeout")
    store.hook_ran(dump)
    again = ControlStore(tmp_path / "history.db")
    (web,) = again.hook_runs("web")
    assert (web.phase, web.hook, web.exit_code, web.output) == ("post_update", "tell", 1, "down\n")
    (db,) = again.hook_runs("db")
    assert db.exit_code is None and db.error == "timeout" and len(db.output) == 64 * 1024, "the tail is kept"
    assert [r.container for r in again.hook_runs()] == ["web", "db"]
