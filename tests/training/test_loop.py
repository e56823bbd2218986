"""The SFT loop: identical numerics across meshes, and kill/resume with identical metrics."""

import dataclasses
import json
import os

import chex
import jax
import numpy as np
import pytest

from bonjax.parallel.mesh import make_mesh
from bonjax.training import loop
from bonjax.training.metrics_writer import read_metrics
from bonjax.training.run_setup import build_run_setup
from bonjax.training import sft
from bonjax.training.sft import sft_loss
from bonjax.training.state import make_optimizer
from bonjax.training.step import jit_train_step, make_train_step
from experiments import quickstart
from tests.small_configs import shrink


def small_config(**train):
  config = shrink(quickstart.get_config(), num_train=256, num_test=16, batch_size=16,
                  warmup_steps=2, eval_samples=4)
  config.train.num_steps = 8
  config.train.log_every = 1
  config.train.checkpoint_every = 2
  for k, v in train.items():
    config.train[k] = v
  return config


def one_step(config, mesh_shape):
  """Loss and updated parameters after one SFT step on a mesh of `mesh_shape`."""
  setup = build_run_setup(config)
  n = int(np.prod(mesh_shape))
  setup = dataclasses.replace(setup, mesh=make_mesh(*mesh_shape, devices=jax.devices()[:n]))
  optimizer = make_optimizer(config.train)
  shardings = loop.state_shardings(setup, optimizer)
  state = loop.init_state(setup, optimizer, shardings, setup.init_params(config.seed))
  loss_fn = lambda p, b, r: sft_loss(p, b, r, model_cfg=setup.model_cfg)
  batch_shardings = {k: setup.batch_sharding(2) for k in ("tokens", "valid", "target_mask")}
  step = jit_train_step(make_train_step(loss_fn, optimizer), shardings, batch_shardings, setup.mesh)
  state, metrics = step(state, setup.shard_batch(sft.supervised_batch(setup, 0)))
  return float(metrics["loss"]), jax.device_get(state.params), state


@pytest.mark.devices(8)
def test_train_step_same_on_one_device_and_8_device_meshes():
  config = small_config()
  loss_1, params_1, _ = one_step(config, (1, 1, 1))
  for shape in [(8, 1, 1), (1, 8, 1), (2, 2, 2)]:
    loss_n, params_n, state = one_step(config, shape)
    assert loss_n == pytest.approx(loss_1, rel=1e-5), shape
    chex.assert_trees_all_close(params_n, params_1, rtol=1e-5, atol=1e-6)
    leaves = jax.tree.leaves(state.params)
    assert all(len(x.sharding.device_set) == 8 for x in leaves), shape
    # Pure data parallelism replicates parameters; fsdp / tensor axes really split them.
    split = [not x.sharding.is_fully_replicated for x in leaves]
    assert any(split) == (shape[0] != 8), shape


class _Crash(Exception):
  pass


def test_killed_run_resumes_with_identical_metrics(tmp_path, monkeypatch):
  config = small_config()
  reference_dir, resumed_dir = str(tmp_path / "ref"), str(tmp_path / "resumed")
  loop.train(config, reference_dir)

  real_batch = sft.supervised_batch

  def crash_at_step_5(setup, step):
    if step == 5:
      raise _Crash()
    return real_batch(setup, step)

  monkeypatch.setattr(sft, "supervised_batch", crash_at_step_5)
  with pytest.raises(_Crash):
    loop.train(config, resumed_dir)
  steps_before = [m["step"] for m in read_metrics(resumed_dir)]
  assert steps_before == [1, 2, 3, 4, 5]  # Step 5 was logged but never checkpointed.
  monkeypatch.setattr(sft, "supervised_batch", real_batch)
  report = loop.train(config, resumed_dir)  # Resumes from the step-4 checkpoint.

  ref, resumed = read_metrics(reference_dir), read_metrics(resumed_dir)
  assert [m["step"] for m in resumed] == [m["step"] for m in ref]
  for a, b in zip(ref, resumed):
    assert a.keys() == b.keys()
    for key in a.keys() - {"seconds_per_step"}:  # Wall time is the one thing that differs.
      assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), (a["step"], key)
  with open(os.path.join(reference_dir, "eval.json")) as f:
    assert json.load(f)["curve"] == report["curve"]
  assert os.path.getsize(os.path.join(resumed_dir, "bon_curve.png")) > 1000
  assert os.listdir(os.path.join(resumed_dir, "tensorboard"))
  # keep_checkpoints=2: only the two newest checkpoints stay on disk.
  assert sorted(os.listdir(os.path.join(resumed_dir, "checkpoints"))) == ["6", "8"]
