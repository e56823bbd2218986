"""The `bonjax` command maps each subcommand onto its absl entry point.

The mapping is checked exactly; a real train -> sample round trip and the sweep's help
run through `launch.cli.main` in child processes (absl flags are process-global), as the
installed console script calls it.
"""

import json
import os
import subprocess
import sys

import pytest

from launch import cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Tiny run: a few steps of the quickstart on a handful of problems.
SMALL = ["--config.train.num_steps=2", "--config.train.batch_size=8",
         "--config.train.warmup_steps=1", "--config.task.num_train=16",
         "--config.task.num_test=8", "--config.eval.num_prompts=8",
         "--config.eval.prompt_batch_size=8", "--config.eval.num_samples=2",
         "--config.sampling.num_samples=2", "--config.train.async_checkpoints=False"]


@pytest.mark.parametrize("sub, module, fixed", [
    ("train", "launch.main", ["--mode=train"]),
    ("eval", "launch.main", ["--mode=eval"]),
    ("sample", "launch.main", ["--mode=sample"]),
    ("export", "launch.main", ["--mode=export"]),
    ("sweep", "launch.sweep", []),
])
def test_each_subcommand_maps_to_its_entry_point(sub, module, fixed):
  command, argv = cli.entry_point_argv(["/usr/bin/bonjax", sub, "--workdir=w", "--x=1"])
  assert command.module == module
  assert argv == [f"bonjax {sub}", *fixed, "--workdir=w", "--x=1"]


@pytest.mark.parametrize("argv, message", [
    (["bonjax"], "usage: bonjax {train|eval|sample|export|sweep} [flags]"),
    (["bonjax", "fit"], "unknown command 'fit'"),
    (["bonjax", "--workdir=w"], "unknown command '--workdir=w'"),
    (["bonjax", "eval", "--mode=train"], "--mode: `bonjax eval` sets --mode=eval"),
    (["bonjax", "train", "-mode", "eval"], "--mode: `bonjax train` sets --mode=train"),
])
def test_bad_command_lines_exit_2_with_a_named_error(argv, message, capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(argv)
  assert exit_info.value.code == cli.EXIT_USAGE
  assert message in capsys.readouterr().err


def test_help_lists_every_subcommand(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["bonjax", "--help"])
  assert exit_info.value.code == 0
  out = capsys.readouterr().out
  for sub, command in cli.COMMANDS.items():
    assert f"  {sub:<7} {command.help}" in out


def _bonjax(*args: str, cwd: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS="--xla_force_host_platform_device_count=1",
             JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-c", "from launch.cli import main; main()", *args],
                        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_train_then_sample_through_the_command(tmp_path):
  workdir = str(tmp_path / "run")
  train = _bonjax("train", f"--workdir={workdir}", *SMALL, cwd=str(tmp_path))
  assert train.returncode == 0, train.stderr[-3000:]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2"]
  with open(os.path.join(workdir, "eval.json"), encoding="utf-8") as f:
    report = json.load(f)
  assert (report["step"], report["num_prompts"], report["num_samples"]) == (2, 8, 2)

  sample = _bonjax("sample", f"--workdir={workdir}", *SMALL, cwd=str(tmp_path))
  assert sample.returncode == 0, sample.stderr[-3000:]
  assert sample.stdout.count("(gold ") == 5  # Five held-out prompts, each with its gold answer.


def test_launcher_errors_keep_their_exit_status(tmp_path):
  result = _bonjax("eval", f"--workdir={tmp_path / 'empty'}", cwd=str(tmp_path))
  assert result.returncode == 2
  assert "no checkpoint under" in result.stderr
  assert not os.path.exists(tmp_path / "empty")


def test_export_reaches_the_launchers_export_mode(tmp_path):
  result = _bonjax("export", f"--workdir={tmp_path / 'run'}", cwd=str(tmp_path))
  assert result.returncode == 2
  assert "error: --mode=export needs --export_dir=<directory>" in result.stderr


def test_sweep_help_is_the_sweeps(tmp_path):
  result = _bonjax("sweep", "--help", cwd=str(tmp_path))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "--seeds: Seeds per algorithm." in result.stdout
  assert "--root: Directory of the sweep's runs and reports." in result.stdout
