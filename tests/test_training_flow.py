"""delving.training reads in the order a run happens: from `loop.train` to the
first step, the stages (module-level functions) of each training module are
entered from another module at most a few times more than once (the house a
newcomer can walk). Methods of the objects the run carries along (the config,
the stopper, the data source, the run directory, the clock) are not stages."""

import sys

from delving.training import config, loop
from tests import train_testutil

# The config is the object the flow carries, not a stage of it.
_CARRIED = {"config"}


def _entries_until_first_step(cfg):
    """[(module, function)] of every call from one delving.training module
    into another, until the compiled step is traced (its first call)."""
    entries, done = [], []

    def profile(frame, event, arg):
        if done or event != "call" or frame.f_back is None:
            return
        callee = frame.f_globals.get("__name__", "")
        back = frame.f_back
        if back.f_globals.get("__name__") == "contextlib" and back.f_back:  # `with open_run(...)`
            back = back.f_back
        caller = back.f_globals.get("__name__", "")
        if callee.endswith("train_steps") or frame.f_code.co_name.endswith("train_steps"):
            done.append(True)
            return
        parts = [name.rsplit(".", 1) for name in (caller, callee)]
        inside = all(p[0] == "delving.training" for p in parts)
        stage = "." not in frame.f_code.co_qualname  # not a method, not a nested function
        if caller != callee and inside and stage and parts[1][1] not in _CARRIED:
            entries.append((parts[1][1], frame.f_code.co_name))

    sys.setprofile(profile)
    try:
        loop.train(cfg, verbose=0)
    finally:
        sys.setprofile(None)
    assert done, "the compiled step was never traced"
    return entries


def test_training_enters_its_modules_in_run_order(tmp_path, tmp_path_factory):
    cfg = config.resolve_config(
        **train_testutil.TINY_RECIPE,
        data_dir=train_testutil.tiny_data_dir(tmp_path_factory),
        model_dir=str(tmp_path / "run"),
    )
    entries = _entries_until_first_step(cfg)
    first = list(dict.fromkeys(module for module, _ in entries))
    assert first == ["setup", "inputs", "run_dir", "optimizer", "step", "estimate"], entries
    # Each later entry into a module already left is a jump back a reader makes.
    stays = [m for i, (m, _) in enumerate(entries) if i == 0 or entries[i - 1][0] != m]
    returns = len(stays) - len(set(stays))
    assert returns <= 4, (returns, entries)
