r"""The `bonjax` command: one name for the absl entry points.

  bonjax train  [launcher flags]   # python -m launch.main --mode=train  [flags]
  bonjax eval   [launcher flags]   # python -m launch.main --mode=eval   [flags]
  bonjax sample [launcher flags]   # python -m launch.main --mode=sample [flags]
  bonjax export [launcher flags]   # python -m launch.main --mode=export [flags]
  bonjax sweep  [sweep flags]      # python -m launch.sweep [flags]

Every flag after the subcommand goes to the entry point unchanged (`bonjax train --help` lists
the launcher's, `bonjax sweep --help` the sweep's); exit statuses are the entry point's.
Installed by `pip install` as a console script (setup.py `entry_points`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from typing import Callable, Sequence

EXIT_USAGE = 2
_MODE_ARG = re.compile(r"^--?mode(=|$)")
_HELP_ARGS = ("-h", "-?", "--help", "--helpshort", "--helpfull")


@dataclasses.dataclass(frozen=True)
class Command:
  """One subcommand: the entry-point module it runs and the flags it adds in front."""

  module: str
  fixed_args: tuple[str, ...]
  help: str


COMMANDS: dict[str, Command] = {
    "train": Command("launch.main", ("--mode=train",), "train (resuming), then a BoN evaluation"),
    "eval": Command("launch.main", ("--mode=eval",), "BoN evaluation of the latest checkpoint"),
    "sample": Command("launch.main", ("--mode=sample",), "print completions of a few prompts"),
    "export": Command("launch.main", ("--mode=export",), "write the latest checkpoint in HF format"),
    "sweep": Command("launch.sweep", (), "all algorithms x seeds, with a results table"),
}


class CliUsageError(Exception):
  """A command line without a known subcommand, or one that sets what the subcommand sets."""


def usage() -> str:
  lines = ["usage: bonjax {" + "|".join(COMMANDS) + "} [flags]", ""]
  lines += [f"  {name:<7} {c.help}  ({' '.join(('python -m', c.module) + c.fixed_args)})"
            for name, c in COMMANDS.items()]
  return "\n".join(lines + ["", "`bonjax <command> --help` lists that command's flags."])


def entry_point_argv(argv: Sequence[str]) -> tuple[Command, list[str]]:
  """The entry point and its argv (argv[0] is the program name) for `bonjax` argv.

  Args:
    argv: the command line, argv[0] the program (e.g. ["bonjax", "eval", "--workdir=w"]).

  Returns:
    (command, ["bonjax <sub>", *fixed args, *the remaining args]).

  Raises:
    CliUsageError: no or an unknown subcommand, or a --mode flag beside one that sets it.
  """
  if len(argv) < 2 or argv[1] not in COMMANDS:
    given = f"unknown command {argv[1]!r}\n" if len(argv) >= 2 else ""
    raise CliUsageError(given + usage())
  command, rest = COMMANDS[argv[1]], list(argv[2:])
  if command.fixed_args and any(_MODE_ARG.match(a) for a in rest):
    raise CliUsageError(f"--mode: `bonjax {argv[1]}` sets {command.fixed_args[0]}; "
                        f"use another subcommand for another mode")
  return command, [f"{os.path.basename(argv[0])} {argv[1]}", *command.fixed_args, *rest]


def _launcher_runner(args: list[str]) -> None:
  """Runs launch.main as `python -m launch.main` does (absl logging, named usage errors)."""
  from absl import app  # pylint: disable=g-import-not-at-top
  from launch import main as launch_main  # pylint: disable=g-import-not-at-top
  app.run(launch_main.main, argv=args, flags_parser=launch_main._parse_or_exit)  # pylint: disable=protected-access


def _sweep_runner(args: list[str]) -> None:
  """Runs launch.sweep as `python -m launch.sweep` does; its help lists the sweep's flags
  (absl's own help would list those of the console script's module, which has none)."""
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  from launch import sweep  # pylint: disable=g-import-not-at-top
  if any(a.split("=")[0] in _HELP_ARGS for a in args[1:]):
    print(f"{sweep.__doc__}\nflags:\n{flags.FLAGS.module_help(sweep.__name__)}")
    sys.exit(0)
  app.run(sweep.main, argv=args)


# Imported only when chosen: the sweep defines absl flags at import, the launcher its own.
_RUNNERS: dict[str, Callable[[list[str]], None]] = {
    "launch.main": _launcher_runner,
    "launch.sweep": _sweep_runner,
}


def main(argv: Sequence[str] | None = None) -> None:
  """Console-script entry: runs the subcommand's entry point; exits with its status."""
  argv = list(sys.argv if argv is None else argv)
  if len(argv) == 2 and argv[1] in ("-h", "--help", "help"):
    print(usage())
    sys.exit(0)
  try:
    command, args = entry_point_argv(argv)
  except CliUsageError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(EXIT_USAGE)
  _RUNNERS[command.module](args)


if __name__ == "__main__":
  main()
