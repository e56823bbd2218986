"""Two processes joined through `launch.main`'s own flags train like one process.

Two `python -m launch.main` processes on localhost (4 CPU devices each, joined with
--coordinator_address/--num_processes/--process_id) run two SFT steps and the final
evaluation of the quickstart model over one 8-device mesh, writing one collective checkpoint;
this process runs the same command alone on its 8 devices with the same global batch. The
parameters, the evaluation report and the metrics must agree, and only process 0 reports.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np

from bonjax.training import loop
from bonjax.training.run_setup import build_run_setup
from experiments import quickstart
from launch import main
from launch import multihost

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OVERRIDES = {"train.num_steps": 2, "train.batch_size": 8, "train.warmup_steps": 1,
             "train.async_checkpoints": False, "train.log_every": 1, "task.num_train": 16,
             "task.num_test": 8, "eval.num_prompts": 8, "eval.prompt_batch_size": 8,
             "eval.num_samples": 2}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _argv(workdir: str) -> list[str]:
  return [f"--workdir={workdir}", *(f"--config.{k}={v}" for k, v in OVERRIDES.items())]


def test_two_launcher_processes_match_one_process(tmp_path):
  multi, single = str(tmp_path / "multi"), str(tmp_path / "single")
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4")
  for name in ("BONJAX_COORDINATOR_ADDRESS", "BONJAX_NUM_PROCESSES", "BONJAX_PROCESS_ID"):
    env.pop(name, None)
  procs, logs = [], []
  for rank in range(2):
    logs.append(tmp_path / f"process_{rank}.log")
    with open(logs[-1], "w") as log:
      procs.append(subprocess.Popen(
          [sys.executable, "-m", "launch.main", *_argv(multi),
           f"--coordinator_address=localhost:{port}", "--num_processes=2",
           f"--process_id={rank}"], env=env, cwd=_REPO_ROOT, stdout=log,
          stderr=subprocess.STDOUT))
  try:
    assert main.run(["main", *_argv(single)]) == 0  # Meanwhile: the one-process reference.
    for proc in procs:
      proc.wait(timeout=600)
  finally:
    for proc in procs:  # One crashed process leaves the other waiting at a barrier.
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  outputs = [log.read_text() for log in logs]
  for rank, proc in enumerate(procs):
    assert proc.returncode == 0, f"process {rank}:\n{outputs[rank][-3000:]}"
  # Process 0 printed and logged the report; process 1 only took part.
  assert '"step": 2' in outputs[0] and '"step": 2' not in outputs[1]
  assert "Wrote" in outputs[0] and "Wrote" not in outputs[1]

  config = quickstart.get_config()
  for field, value in OVERRIDES.items():
    section, name = field.split(".")
    config[section][name] = value
  setup = build_run_setup(config)
  (multi_params, multi_step), (single_params, single_step) = (
      loop.restore_params(setup, w) for w in (multi, single))
  assert multi_step == single_step == 2
  for got, want in zip(jax.tree.leaves(jax.device_get(multi_params)),
                       jax.tree.leaves(jax.device_get(single_params))):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

  rows = [[json.loads(line) for line in open(os.path.join(w, "metrics.jsonl"))]
          for w in (multi, single)]
  losses = [[r["loss"] for r in rs if "loss" in r] for rs in rows]
  assert len(losses[0]) == 2
  np.testing.assert_allclose(losses[0], losses[1], rtol=2e-6)
  reports = [json.loads(open(os.path.join(w, "eval.json")).read()) for w in (multi, single)]
  assert reports[0]["curve"] == reports[1]["curve"]


def test_flags_override_the_environment_and_bad_values_are_usage_errors(tmp_path, capsys):
  env = {"BONJAX_COORDINATOR_ADDRESS": "h:1", "BONJAX_NUM_PROCESSES": "4", "OTHER": "x"}
  values = {"coordinator_address": "10.0.0.2:8476", "num_processes": None, "process_id": 3}
  assert multihost.environment(values, env) == {
      "BONJAX_COORDINATOR_ADDRESS": "10.0.0.2:8476", "BONJAX_NUM_PROCESSES": "4",
      "BONJAX_PROCESS_ID": "3", "OTHER": "x"}
  status = main.run(["main", f"--workdir={tmp_path / 'w'}", "--coordinator_address=h:1",
                     "--num_processes=2", "--process_id=2"])
  assert status == 2
  assert "BONJAX_PROCESS_ID=2: must be in [0, 2)" in capsys.readouterr().err
  assert not (tmp_path / "w").exists()


def test_every_entry_point_has_the_multihost_flags():
  # Subprocesses: the entry points define absl flags of the same names (--config, --workdir).
  for module in ("launch.sweep", "launch.train_verifier"):
    out = subprocess.run([sys.executable, "-m", module, "--helpfull"], cwd=_REPO_ROOT,
                         capture_output=True, text=True, check=False,
                         env=dict(os.environ, JAX_PLATFORMS="cpu")).stdout
    for name in multihost.FLAG_VARIABLES:
      assert f"--{name}:" in out, (module, name)
