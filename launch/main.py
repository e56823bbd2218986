r"""bonjax entry point: train, evaluate or sample, from an ml_collections config file.

With no flags it runs the quickstart (SFT of the tiny model on arithmetic, then a BoN
evaluation) into ./workdir/quickstart:

  python -m launch.main

Any config field can be overridden:

  python -m launch.main --config=experiments/quickstart.py --workdir=/tmp/run \
      --config.train.num_steps=500 --config.eval.num_samples=32

Modes: train (resumes from the latest checkpoint in --workdir, evaluates at the end), eval
(BoN evaluation of the latest checkpoint), sample (prints completions of a few prompts),
export (the latest checkpoint as a Hugging Face checkpoint in --export_dir: safetensors,
config and tokenizer, loadable by transformers).

A training run holds its workdir alone (`<workdir>/run.lock`), and resumes a checkpoint only
if it was made with the same config, up to fields that do not change what is trained (run
length, logging, checkpoint and evaluation settings, mesh); --allow_config_change resumes
across other changes, each logged.

Exit status:
  0  done.
  1  an unexpected error (with its traceback).
  2  invalid command line or config, or a workdir checkpoint of another config: the message
     names the field, the value and the rule; nothing was written.
  3  preempted by SIGTERM: the current step was checkpointed; rerun the same command to resume.
  4  the workdir is in use by another run (the message names its host and pid).
  5  training stopped on a non-finite loss or gradient (`train.on_nonfinite="stop"`); no
     checkpoint of it was saved.
  6  a checkpoint could not be written (read-only or full disk: the previous one is kept), or
     none of the workdir's checkpoints reads back.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any, Sequence

from absl import app, flags, logging
import ml_collections
from ml_collections import config_flags

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO_ROOT not in sys.path:  # Lets `python launch/main.py` import bonjax and experiments.
  sys.path.insert(0, _REPO_ROOT)

from bonjax.training import export, loop  # noqa: E402
from launch import multihost  # noqa: E402
from launch.logging_setup import quiet_library_logs  # noqa: E402
from bonjax.training.checkpointing import CheckpointError  # noqa: E402
from bonjax.training.config_validation import ConfigError  # noqa: E402
from bonjax.training.nonfinite import NonFiniteError  # noqa: E402
from bonjax.training.workdir import WorkdirError, WorkdirLockedError  # noqa: E402

DEFAULT_CONFIG = os.path.join(_REPO_ROOT, "experiments", "quickstart.py")
MODES = ("train", "eval", "sample", "export")

EXIT_USAGE = 2
EXIT_PREEMPTED = 3
# Library errors the launcher reports as one line and the exit status of each (first match).
ERROR_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (ConfigError, EXIT_USAGE),
    (WorkdirError, EXIT_USAGE),
    (FileNotFoundError, EXIT_USAGE),
    (WorkdirLockedError, 4),
    (NonFiniteError, 5),
    (CheckpointError, 6),
)

_CONFIG_ARG = re.compile(r"^--?config(=|$)")
_OVERRIDE_ARG = re.compile(r"^--?(?:no)?config\.([^=]+)")


class UsageError(Exception):
  """A command line that cannot run; the message names the flag and what is wrong."""


class HelpRequested(Exception):
  """--help / --helpshort / --helpfull / -h: the message is the help text."""


_HELP_ARGS = ("-h", "-?", "--help", "--helpshort", "--helpfull")


def default_workdir(config_path: str) -> str:
  """workdir/<config file name>, plus _<argument> for `file.py:<argument>`: every config
  argument (e.g. each algorithm of experiments/smollm2_finetune.py) gets its own run directory,
  so no run resumes another's checkpoint."""
  path, _, argument = config_path.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("workdir", f"{name}_{argument}" if argument else name)


def _define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> dict[str, Any]:
  """Defines the launcher's flags on `flag_values` for parsing `argv` (the config flag reads
  its `--config.*` overrides from it)."""
  multihost.define_flags(flag_values)  # --coordinator_address & co. (multi-process runs)
  return {
      "config": config_flags.DEFINE_config_file(
          "config", DEFAULT_CONFIG, "Experiment config file (a Python file with get_config()).",
          flag_values=flag_values, lock_config=True, sys_argv=list(argv)),
      "workdir": flags.DEFINE_string(
          "workdir", None, "Run directory for checkpoints, metrics and reports "
          "(default: ./workdir/<config file name>[_<config argument>]).",
          flag_values=flag_values),
      "mode": flags.DEFINE_enum("mode", "train", list(MODES), "What to run.",
                                flag_values=flag_values),
      "export_dir": flags.DEFINE_string(
          "export_dir", None, "--mode=export: directory of the Hugging Face checkpoint.",
          flag_values=flag_values),
      "allow_config_change": flags.DEFINE_bool(
          "allow_config_change", False, "Resume a workdir checkpoint made with another config "
          "(model, data, optimizer, ...), logging each change, instead of refusing.",
          flag_values=flag_values),
  }


def _config_args(argv: Sequence[str]) -> list[str]:
  """The `--config=...` (or `--config PATH`) arguments of `argv`."""
  out = []
  for i, arg in enumerate(argv):
    if _CONFIG_ARG.match(arg):
      out.append(arg)
      if "=" not in arg and i + 1 < len(argv):
        out.append(argv[i + 1])
  return out


def _unknown_override(config: Any, argv: Sequence[str]) -> str | None:
  """A message for the first `--config.<path>` whose path the config does not have."""
  for arg in argv:
    match = _OVERRIDE_ARG.match(arg)
    if not match:
      continue
    node, walked = config, "config"
    for part in match.group(1).split("."):
      part = part.split("[")[0]
      if not hasattr(node, "keys") or part not in node.keys():
        known = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "no fields"
        return (f"--config.{match.group(1)}: unknown field {part!r} ({walked} has: {known})")
      node, walked = node[part], f"{walked}.{part}"
  return None


def _load_base_config(argv: Sequence[str]) -> Any:
  """The config file's config without overrides, to check override names against it."""
  scratch = flags.FlagValues()
  base_argv = [argv[0], *_config_args(argv)]
  holder = config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "", flag_values=scratch,
                                           lock_config=True, sys_argv=base_argv)
  scratch(base_argv)
  config = holder.value
  if not isinstance(config, ml_collections.ConfigDict):
    config.keys()  # A config that failed to load raises its loading error on any access.
    raise TypeError(f"get_config() returned a {type(config).__name__}, not a ConfigDict")
  return config


def parse_command_line(argv: Sequence[str]) -> dict[str, Any]:
  """Parses the launcher's command line.

  Returns:
    {"config", "workdir", "mode", "export_dir", "allow_config_change", "coordinator_address",
    "num_processes", "process_id"} values.

  Raises:
    UsageError: a missing or broken config file, an unknown config field, a value of the
      wrong type, an unknown flag or an extra argument, named.
    HelpRequested: a help flag, with the help text.
  """
  if any(arg.split("=")[0] in _HELP_ARGS for arg in argv[1:]):
    flag_values = flags.FlagValues()
    _define_flags(flag_values, argv[:1])
    raise HelpRequested(f"{__doc__}\nflags:\n{flag_values.get_help()}\n"
                        f"  --config.<field>=<value>: sets any field of the config")
  try:
    base = _load_base_config(argv)
  except Exception as e:  # The config file is user code: report whatever it raised.
    raise UsageError(f"--config: {_one_line(e)}") from None
  unknown = _unknown_override(base, argv)
  if unknown:
    raise UsageError(unknown)
  flag_values = flags.FlagValues()
  for module, module_flags in flags.FLAGS.flags_by_module_dict().items():
    if module.startswith("absl."):  # absl's logging and help flags.
      for flag in module_flags:
        flag_values[flag.name] = flag
  try:
    holders = _define_flags(flag_values, argv)
    rest = flag_values(list(argv))
    values = {name: holder.value for name, holder in holders.items()}
    values.update(multihost.flag_values_of(flag_values))
  except flags.Error as e:
    raise UsageError(str(e)) from None
  except Exception as e:  # Config-flag override parsing raises assorted types.
    raise UsageError(_one_line(e)) from None
  if len(rest) > 1:
    raise UsageError(f"unexpected arguments: {rest[1:]}")
  flags.FLAGS.mark_as_parsed()
  if not values["workdir"]:
    values["workdir"] = default_workdir(flag_values["config"].config_filename)
  if values["mode"] == "export" and not values["export_dir"]:
    raise UsageError("--mode=export needs --export_dir=<directory>")
  return values


def _one_line(error: BaseException) -> str:
  """The last line of an error's message: config-loading errors carry the config file's own
  traceback or the list of paths tried, and end with the cause."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return f"{type(error).__name__}: {lines[-1]}" if lines else type(error).__name__


def _print_report(result: dict[str, Any], workdir: str) -> None:
  curve = result["curve"]
  print(json.dumps({"step": result["step"], "ks": curve["ks"],
                    **{m: [round(v, 4) for v in d["mean"]] for m, d in curve["metrics"].items()}},
                   indent=1))
  print(f"report: {os.path.join(workdir, 'eval.json')}  plot: {os.path.join(workdir, 'bon_curve.png')}")


def _error_status(error: BaseException) -> int | None:
  for kind, status in ERROR_STATUS:
    if isinstance(error, kind):
      return status
  return None


def run(argv: Sequence[str]) -> int:
  """Runs the command line `argv` (argv[0] is the program); returns the exit status (see the
  module docstring). Errors the user can fix are printed as `error: ...` on stderr."""
  try:
    args = parse_command_line(argv)
  except HelpRequested as e:
    print(e)
    return 0
  except UsageError as e:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_USAGE
  return execute(args)


def execute(args: dict[str, Any]) -> int:
  """Runs parsed arguments (`parse_command_line`); returns the exit status."""
  workdir, mode = args["workdir"], args["mode"]
  try:
    multihost.initialize(args)  # Joins the processes of a multi-host run; else nothing.
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_USAGE
  logging.info("mode=%s workdir=%s", mode, os.path.abspath(workdir))
  try:
    if mode == "train":
      result = loop.train(args["config"], workdir, args["allow_config_change"])
    elif mode == "export":
      result = export.export_policy(args["config"], workdir, args["export_dir"])
      print(f"exported step {result['step']} to {result['export_dir']}")
    else:
      result = {"eval": loop.evaluate, "sample": loop.sample}[mode](args["config"], workdir)
  except Exception as e:
    status = _error_status(e)
    if status is None:
      raise
    print(f"error: {e}", file=sys.stderr)
    return status
  if mode == "train" and "preempted_at" in result:
    print(f"preempted: SIGTERM received; saved step {result['preempted_at']} in "
          f"{os.path.join(workdir, 'checkpoints')}; rerun the same command to resume "
          f"(exit status {EXIT_PREEMPTED})")
    return EXIT_PREEMPTED
  if mode in ("train", "eval") and "curve" in result and multihost.is_writer():
    _print_report(result, workdir)
  return 0


def _parse_or_exit(argv: list[str]) -> dict[str, Any]:
  try:
    return parse_command_line(argv)
  except HelpRequested as e:
    print(e)
    sys.exit(0)
  except UsageError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def main(args: dict[str, Any]) -> None:
  quiet_library_logs()
  sys.exit(execute(args))


if __name__ == "__main__":
  # The launcher parses its own command line, so every bad flag or config value is a named
  # error with exit status 2; absl sets up logging and the exception handler.
  app.run(main, flags_parser=_parse_or_exit)
