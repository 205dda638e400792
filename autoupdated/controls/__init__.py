"""Operator controls (issue 12): pure decisions about *whether* and *when* an update found by a
run may go on — monitor-only and approval modes, maintenance windows, a cooldown, the hooks to
run around a restart.  Nothing here does IO: the engine step (engine/controls.py) asks these
functions and obeys; `now` is always passed in.
"""
