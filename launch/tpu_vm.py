r"""Set up and start a bonjax run on every worker of a Cloud TPU VM, through gcloud.

By default the gcloud commands are only printed; --execute runs them in order (stopping at the
first failure). Every command reaches all workers of the slice (--worker=all): each worker holds
a copy of the code and runs the same launcher, and on a multi-host slice the launcher joins the
workers with jax.distributed (see bonjax/parallel/distributed.py).

  # Print the commands that copy this checkout to the VM, install it and start the quickstart:
  python -m launch.tpu_vm --name=my-tpu --zone=us-central2-b \
      --config=experiments/quickstart.py --workdir=/home/$USER/runs/quickstart

  # Clone from git instead of copying, pass config overrides, run in the background:
  python -m launch.tpu_vm --name=my-tpu --zone=us-central2-b --project=my-project \
      --repo=https://github.com/ORG/bonjax.git --config=experiments/bon_rl_v.py \
      --workdir=gs://my-bucket/bon_rl_v --override=train.num_steps=2000 --detach --execute

Actions (--action): setup (copy or clone the code, pip install -e .), run (start the launcher),
all (both; the default).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
import types
from typing import Callable, Sequence

from absl import app, flags

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> types.SimpleNamespace:
  """Defines this entry point's flags; called only when it runs, since absl flags are
  process-global and other entry points define some of the same names (e.g. --config)."""
  define = lambda kind, *args: getattr(flags, "DEFINE_" + kind)(*args, flag_values=flag_values)
  return types.SimpleNamespace(
      name=define("string", "name", None, "TPU VM name."),
      zone=define("string", "zone", None, "Zone of the TPU VM, e.g. us-central2-b."),
      project=define("string", "project", None, "Google Cloud project (default: gcloud's)."),
      repo=define("string", "repo", _REPO_ROOT, "Code to put on the workers: a git URL to "
                  "clone, or a local directory to copy (default: this checkout)."),
      branch=define("string", "branch", None, "Branch or tag to clone (git URLs only)."),
      remote_dir=define("string", "remote_dir", "bonjax",
                        "Directory of the code on the workers (relative to home)."),
      pip_extras=define("list", "pip_extras", ["jax[tpu]"],
                        "Packages installed beside `pip install -e .` (TPU runtime)."),
      config=define("string", "config", "experiments/quickstart.py",
                    "Experiment config, relative to the code directory."),
      workdir=define("string", "workdir", None, "Run directory on the workers, or gs://..."),
      mode=define("enum", "mode", "train", ["train", "eval", "sample"], "Launcher mode."),
      overrides=define("multi_string", "override", [],
                       "Config override FIELD=VALUE (repeatable)."),
      env=define("multi_string", "env", [], "Environment variable NAME=VALUE for the run."),
      detach=define("bool", "detach", False, "Start the run in the background (nohup) with its "
                    "output in ~/<remote_dir>.log, so it outlives the ssh session."),
      action=define("enum", "action", "all", ["setup", "run", "all"], "What to do."),
      execute=define("bool", "execute", False, "Run the commands instead of printing them."),
  )


Command = list[str]


@dataclasses.dataclass(frozen=True)
class TpuVm:
  """Where the commands go."""

  name: str
  zone: str
  project: str | None = None

  def gcloud(self, verb: str, *args: str) -> Command:
    """`gcloud compute tpus tpu-vm VERB ... --zone=Z [--project=P] --worker=all`."""
    scope = [f"--zone={self.zone}"] + ([f"--project={self.project}"] if self.project else [])
    return ["gcloud", "compute", "tpus", "tpu-vm", verb, *args, *scope, "--worker=all"]

  def ssh(self, remote_command: str) -> Command:
    return self.gcloud("ssh", self.name, f"--command={remote_command}")


@dataclasses.dataclass(frozen=True)
class LaunchPlan:
  """What to put on the workers and what to run there.

  Attributes:
    vm: the TPU VM.
    repo: git URL, or local directory to copy.
    remote_dir: code directory on the workers (relative to the home directory).
    config: config file relative to the code directory.
    workdir: run directory (worker-local path or gs://).
    branch: branch or tag to clone.
    pip_extras: packages installed with the code.
    mode: launcher mode.
    overrides: FIELD=VALUE config overrides.
    env: NAME=VALUE environment variables of the run.
    detach: run in the background with output to ~/<remote_dir>.log.
  """

  vm: TpuVm
  repo: str
  remote_dir: str = "bonjax"
  config: str = "experiments/quickstart.py"
  workdir: str | None = None
  branch: str | None = None
  pip_extras: tuple[str, ...] = ("jax[tpu]",)
  mode: str = "train"
  overrides: tuple[str, ...] = ()
  env: tuple[str, ...] = ()
  detach: bool = False

  def __post_init__(self):
    parts = self.remote_dir.split("/")
    if not self.remote_dir or os.path.isabs(self.remote_dir) or any(
        p in ("", ".", "..", "~") for p in parts):
      raise ValueError(f"--remote_dir={self.remote_dir!r}: must be a plain relative directory "
                       "(it is replaced on every worker)")

  @property
  def archive(self) -> str:
    """Local tarball of a copied checkout (and its name in the workers' home directory)."""
    return f"/tmp/{self.vm.name}-{os.path.basename(self.remote_dir)}.tar.gz"


def is_git_url(repo: str) -> bool:
  return "://" in repo or repo.startswith("git@")


def _copy_commands(plan: LaunchPlan) -> list[Command]:
  """Pack the checkout (without .git and run directories), copy it, unpack on every worker."""
  archive_name = os.path.basename(plan.archive)
  pack = ["tar", "czf", plan.archive, "--exclude=.git", "--exclude=workdir",
          "--exclude=__pycache__", "--exclude=*.egg-info", "-C", plan.repo, "."]
  copy = plan.vm.gcloud("scp", plan.archive, f"{plan.vm.name}:{archive_name}")
  q = shlex.quote
  unpack = plan.vm.ssh(f"rm -rf {q(plan.remote_dir)} && mkdir -p {q(plan.remote_dir)} && "
                       f"tar xzf {q(archive_name)} -C {q(plan.remote_dir)}")
  return [pack, copy, unpack]


def _clone_commands(plan: LaunchPlan) -> list[Command]:
  """Clone the repository on every worker (replacing an earlier copy)."""
  q = shlex.quote
  branch = f"--branch {q(plan.branch)} " if plan.branch else ""
  return [plan.vm.ssh(f"rm -rf {q(plan.remote_dir)} && "
                      f"git clone --depth=1 {branch}{q(plan.repo)} {q(plan.remote_dir)}")]


def setup_commands(plan: LaunchPlan) -> list[Command]:
  """Commands that put the code on every worker and install it (pip install -e .)."""
  fetch = _clone_commands(plan) if is_git_url(plan.repo) else _copy_commands(plan)
  q = shlex.quote
  packages = " ".join(["-e", "."] + [q(p) for p in plan.pip_extras])
  install = plan.vm.ssh(f"cd {q(plan.remote_dir)} && python3 -m pip install -U pip && "
                        f"python3 -m pip install {packages}")
  return fetch + [install]


def launcher_arguments(plan: LaunchPlan) -> list[str]:
  """`python3 -m launch.main ...` as run in the code directory."""
  if not plan.workdir:
    raise ValueError("--workdir is required to start a run")
  args = ["python3", "-m", "launch.main", f"--config={plan.config}",
          f"--workdir={plan.workdir}", f"--mode={plan.mode}"]
  for override in plan.overrides:
    if "=" not in override:
      raise ValueError(f"--override={override!r}: must be FIELD=VALUE")
    args.append(f"--config.{override}")
  return args


def run_commands(plan: LaunchPlan) -> list[Command]:
  """The command that starts the launcher on every worker (same command on each)."""
  q = shlex.quote
  for assignment in plan.env:
    if "=" not in assignment or not assignment.split("=", 1)[0].isidentifier():
      raise ValueError(f"--env={assignment!r}: must be NAME=VALUE")
  env = "".join(f"{q(a)} " for a in plan.env)
  launcher = env + " ".join(q(a) for a in launcher_arguments(plan))
  if plan.detach:
    log = q(f"{plan.remote_dir}.log")
    launcher = f"nohup env {launcher} > ~/{log} 2>&1 < /dev/null &"
  return [plan.vm.ssh(f"cd {q(plan.remote_dir)} && {launcher}")]


ACTIONS: dict[str, Callable[[LaunchPlan], list[Command]]] = {
    "setup": setup_commands,
    "run": run_commands,
    "all": lambda plan: setup_commands(plan) + run_commands(plan),
}


def execute(commands: Sequence[Command], runner=subprocess.run) -> None:
  """Runs the commands in order; raises CalledProcessError at the first failure."""
  for command in commands:
    print(f"+ {shlex.join(command)}", flush=True)
    runner(command, check=True)


def plan_from_flags() -> LaunchPlan:
  if not FLAGS.name.value or not FLAGS.zone.value:
    raise app.UsageError("--name and --zone are required")
  return LaunchPlan(
      vm=TpuVm(FLAGS.name.value, FLAGS.zone.value, FLAGS.project.value),
      repo=FLAGS.repo.value, remote_dir=FLAGS.remote_dir.value, config=FLAGS.config.value,
      workdir=FLAGS.workdir.value, branch=FLAGS.branch.value,
      pip_extras=tuple(FLAGS.pip_extras.value), mode=FLAGS.mode.value,
      overrides=tuple(FLAGS.overrides.value), env=tuple(FLAGS.env.value),
      detach=FLAGS.detach.value)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    commands = ACTIONS[FLAGS.action.value](plan_from_flags())
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if FLAGS.execute.value:
    execute(commands)
  else:
    for command in commands:
      print(shlex.join(command))


if __name__ == "__main__":
  FLAGS = define_flags()
  app.run(main)
