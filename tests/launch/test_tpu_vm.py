"""The TPU-VM launch script prints (or runs) exactly the gcloud commands it documents."""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys

import pytest

from launch import tpu_vm

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCOPE = ["--zone=us-central2-b", "--project=proj", "--worker=all"]


def _plan(**changes) -> tpu_vm.LaunchPlan:
  base = dict(vm=tpu_vm.TpuVm("v4-32", "us-central2-b", "proj"), repo="/src/bonjax",
              workdir="gs://bucket/run", config="experiments/sft.py")
  return tpu_vm.LaunchPlan(**{**base, **changes})


def test_copying_a_local_checkout():
  commands = tpu_vm.setup_commands(_plan())
  assert commands == [
      ["tar", "czf", "/tmp/v4-32-bonjax.tar.gz", "--exclude=.git", "--exclude=workdir",
       "--exclude=__pycache__", "--exclude=*.egg-info", "-C", "/src/bonjax", "."],
      ["gcloud", "compute", "tpus", "tpu-vm", "scp", "/tmp/v4-32-bonjax.tar.gz",
       "v4-32:v4-32-bonjax.tar.gz", *SCOPE],
      ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "v4-32",
       "--command=rm -rf bonjax && mkdir -p bonjax && tar xzf v4-32-bonjax.tar.gz -C bonjax",
       *SCOPE],
      ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "v4-32",
       "--command=cd bonjax && python3 -m pip install -U pip && "
       "python3 -m pip install -e . 'jax[tpu]'", *SCOPE],
  ]


def test_cloning_a_git_repository():
  commands = tpu_vm.setup_commands(_plan(repo="https://github.com/org/bonjax.git",
                                         branch="v1.0", remote_dir="code/bj", pip_extras=()))
  assert commands == [
      ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "v4-32",
       "--command=rm -rf code/bj && git clone --depth=1 --branch v1.0 "
       "https://github.com/org/bonjax.git code/bj", *SCOPE],
      ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "v4-32",
       "--command=cd code/bj && python3 -m pip install -U pip && python3 -m pip install -e .",
       *SCOPE],
  ]


def test_starting_a_run_in_the_foreground_and_detached():
  plan = _plan(overrides=("train.num_steps=100", "sampling.num_samples=8"),
               env=("BONJAX_DISTRIBUTED=1",))
  (command,) = tpu_vm.run_commands(plan)
  launcher = ("BONJAX_DISTRIBUTED=1 python3 -m launch.main --config=experiments/sft.py "
              "--workdir=gs://bucket/run --mode=train --config.train.num_steps=100 "
              "--config.sampling.num_samples=8")
  assert command == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "v4-32",
                     f"--command=cd bonjax && {launcher}", *SCOPE]
  (detached,) = tpu_vm.run_commands(dataclasses.replace(plan, detach=True))
  assert detached[6] == (f"--command=cd bonjax && nohup env {launcher} > ~/bonjax.log 2>&1 "
                         "< /dev/null &")


def test_remote_values_are_shell_quoted():
  plan = _plan(workdir="/runs/a b", overrides=("task.operators=+-*",))
  (command,) = tpu_vm.run_commands(plan)
  remote = command[6][len("--command="):]
  # The worker's shell sees the arguments unchanged.
  assert shlex.split(remote)[3:] == ["python3", "-m", "launch.main",
                                      "--config=experiments/sft.py", "--workdir=/runs/a b",
                                      "--mode=train", "--config.task.operators=+-*"]


@pytest.mark.parametrize("changes, message", [
    (dict(workdir=None), "--workdir is required"),
    (dict(overrides=("train.num_steps",)), "must be FIELD=VALUE"),
    (dict(env=("1X=2",)), "must be NAME=VALUE"),
])
def test_bad_run_options_are_explained(changes, message):
  with pytest.raises(ValueError, match=message):
    tpu_vm.run_commands(_plan(**changes))


@pytest.mark.parametrize("remote_dir", ["", "/", "..", "~", "a/../b"])
def test_remote_dir_must_be_a_plain_relative_directory(remote_dir):
  with pytest.raises(ValueError, match="must be a plain relative directory"):
    _plan(remote_dir=remote_dir)


def test_execute_runs_the_commands_in_order_and_stops_at_a_failure():
  calls = []

  def runner(command, check):
    calls.append(command)
    if command[0] == "fail":
      raise subprocess.CalledProcessError(1, command)

  with pytest.raises(subprocess.CalledProcessError):
    tpu_vm.execute([["ok", "1"], ["fail"], ["never"]], runner=runner)
  assert calls == [["ok", "1"], ["fail"]]


def test_the_script_prints_the_commands():
  result = subprocess.run(
      [sys.executable, "-m", "launch.tpu_vm", "--name=t", "--zone=z", "--action=run",
       "--workdir=/w", "--config=experiments/rl_v.py", "--mode=eval"],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines() == [
      "gcloud compute tpus tpu-vm ssh t '--command=cd bonjax && python3 -m launch.main "
      "--config=experiments/rl_v.py --workdir=/w --mode=eval' --zone=z --worker=all"]
  missing = subprocess.run([sys.executable, "-m", "launch.tpu_vm", "--zone=z"], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=60)
  assert missing.returncode != 0 and "--name and --zone are required" in missing.stderr
