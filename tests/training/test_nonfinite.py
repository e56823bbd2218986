"""Training on NaN: a non-finite step is never applied; the run stops (default) or skips it with
a counter, and no checkpoint ever holds a NaN."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from bonjax.training import loop, sft
from bonjax.training.checkpointing import Checkpointer, abstract_like
from bonjax.training.metrics_writer import read_metrics
from bonjax.training.nonfinite import NonFiniteError
from bonjax.training.run_setup import build_run_setup
from bonjax.training.state import create_train_state, make_optimizer
from bonjax.training.step import make_train_step
from tests.training.test_loop import small_config


def _quadratic_loss(params, batch, rng):
  del rng
  loss = jnp.sum((params["w"] - batch["target"]) ** 2) * batch["scale"]
  return loss, {}


def test_step_with_nonfinite_loss_leaves_the_state_unchanged():
  optimizer = optax.adam(0.1)
  step = jax.jit(make_train_step(_quadratic_loss, optimizer))
  state = create_train_state({"w": jnp.ones(3)}, optimizer, seed=0)
  target = jnp.zeros(3)
  after_good, metrics = step(state, {"target": target, "scale": jnp.float32(1.0)})
  assert float(metrics["nonfinite"]) == 0.0
  assert not np.array_equal(after_good.params["w"], state.params["w"])
  for scale in (jnp.inf, jnp.nan):
    after_bad, metrics = step(after_good, {"target": target, "scale": jnp.float32(scale)})
    assert float(metrics["nonfinite"]) == 1.0
    assert int(after_bad.step) == int(after_good.step) + 1  # The data position moves on.
    jax.tree.map(np.testing.assert_array_equal, after_bad.params, after_good.params)
    jax.tree.map(np.testing.assert_array_equal, after_bad.opt_state, after_good.opt_state)


def _poison_step(monkeypatch, bad_step: int) -> None:
  """Makes the SFT loss NaN at 0-based step `bad_step` (a `poison` column in its batch)."""
  real_batch, real_loss = sft.supervised_batch, sft.sft_loss

  def batch(setup, step):
    out = real_batch(setup, step)
    out["poison"] = np.full(len(out["tokens"]), step == bad_step)
    return out

  def loss(params, batch, rng, **kwargs):
    value, metrics = real_loss(params, batch, rng, **kwargs)
    return jnp.where(batch["poison"].any(), jnp.nan, value), metrics

  monkeypatch.setattr(sft, "supervised_batch", batch)
  monkeypatch.setattr(sft, "sft_loss", loss)
  monkeypatch.setattr(sft.SupervisedTrainer, "loss_fn", property(
      lambda self: functools.partial(sft.sft_loss, model_cfg=self.setup.model_cfg,
                                     compute_dtype=self.setup.compute_dtype)))


def _checkpoints(workdir, config):
  """{step: params} of every checkpoint in `workdir`."""
  setup = build_run_setup(config)
  optimizer = make_optimizer(config.train)
  shardings = loop.state_shardings(setup, optimizer)
  state = loop.init_state(setup, optimizer, shardings, setup.init_params(config.seed))
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"),
                                  options=ocp.CheckpointManagerOptions(create=False))
  args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_like(state, shardings)))
  out = {step: jax.device_get(manager.restore(step, args=args).state.params)
         for step in manager.all_steps()}
  manager.close()
  return out


def test_nan_loss_stops_the_run_without_saving_it(tmp_path, monkeypatch):
  config = small_config(checkpoint_every=2, log_every=4)
  _poison_step(monkeypatch, bad_step=4)  # The 5th step; checkpoints at 2 and 4 are clean.
  with pytest.raises(NonFiniteError, match=r"step 5: loss=nan grad_norm=0.0 \(not finite; 1 "
                     r"such step\(s\).*the newest checkpoint is step 4.*on_nonfinite='skip'"):
    loop.train(config, str(tmp_path))
  saved = _checkpoints(str(tmp_path), config)
  assert sorted(saved) == [2, 4]  # Not 6: the check runs before that save.
  assert all(np.isfinite(x).all() for p in saved.values() for x in jax.tree.leaves(p))
  assert not os.path.exists(tmp_path / "run.lock")


def test_nan_loss_is_skipped_and_counted(tmp_path, monkeypatch):
  config = small_config(checkpoint_every=1, keep_checkpoints=10, on_nonfinite="skip")
  _poison_step(monkeypatch, bad_step=2)  # The 3rd step.
  loop.train(config, str(tmp_path))
  saved = _checkpoints(str(tmp_path), config)
  assert sorted(saved) == list(range(1, 9))
  # Step 3 applied nothing: its parameters are step 2's, bit for bit; step 4 moved on again.
  jax.tree.map(np.testing.assert_array_equal, saved[3], saved[2])
  assert not np.array_equal(saved[4]["embedding"], saved[3]["embedding"])
  assert all(np.isfinite(x).all() for p in saved.values() for x in jax.tree.leaves(p))
  counts = {m["step"]: m["nonfinite_steps"] for m in read_metrics(str(tmp_path)) if "loss" in m}
  assert counts == {1: 0, 2: 0, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1}
  meta = Checkpointer(str(tmp_path), read_only=True).newest_meta()
  assert meta["nonfinite_steps"] == 1
