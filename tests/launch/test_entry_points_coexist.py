"""Every launch module imports into one process: absl flags are process-global, so two entry
points defining the same flag at import time break whichever test (or notebook, or
`bonjax` subcommand) imports both."""

import importlib
import pkgutil

import launch


def test_every_launch_module_imports_alongside_the_others():
  names = sorted(m.name for m in pkgutil.iter_modules(launch.__path__))
  assert {"main", "sweep", "coscaling", "tpu_vm", "train_verifier"} <= set(names)
  for name in names:
    importlib.import_module(f"launch.{name}")  # DuplicateFlagError would fail here.
