"""Training-side memory knobs: gradient accumulation, LoRA-only updates, the start-up memory
budget, and a LoRA run through the launcher."""

from __future__ import annotations

import json
import logging
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bonjax.models import logprobs, lora, transformer
from bonjax.parallel import memory
from bonjax.training import memory_budget
from bonjax.training.config_validation import ConfigError
from bonjax.training.run_setup import build_run_setup
from bonjax.training.state import create_train_state
from bonjax.training.step import make_train_step
from experiments import quickstart
from launch import main
from tests.models import model_fixtures as fx

pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")

CFG = fx.LLAMA_LIKE


def _row_mean_loss(params, batch, rng, cfg=CFG):
  del rng
  total, _ = logprobs.sequence_logprobs(params, cfg, batch["tokens"], batch["valid"],
                                        batch["valid"])
  return -total.mean(), {"nll": -total.mean()}


def _batch(rows):
  rng = np.random.default_rng(3)
  return {"tokens": jnp.asarray(rng.integers(0, CFG.vocab_size, (rows, 10)), jnp.int32),
          "valid": jnp.asarray(np.arange(10)[None] >= rng.integers(0, 4, (rows, 1)))}


def test_k_micro_batches_equal_one_batch_of_k_times_the_size():
  params = fx.random_params(CFG)
  optimizer = optax.sgd(0.5)
  batch = _batch(8)
  results = []
  for steps in (1, 4):
    step = jax.jit(make_train_step(_row_mean_loss, optimizer, grad_accum_steps=steps))
    state, metrics = step(create_train_state(params, optimizer, seed=0), batch)
    results.append((state.params, metrics))
  (p1, m1), (p4, m4) = results
  assert float(m4["loss"]) == pytest.approx(float(m1["loss"]), rel=1e-6)
  assert float(m4["grad_norm"]) == pytest.approx(float(m1["grad_norm"]), rel=1e-5)
  assert float(m4["grad_norm"]) > 0.1
  chex.assert_trees_all_close(p4, p1, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="train.grad_accum_steps=3: must divide"):
    jax.jit(make_train_step(_row_mean_loss, optimizer, grad_accum_steps=3))(
        create_train_state(params, optimizer, seed=0), batch)


def test_lora_step_updates_only_the_adapters():
  cfg = CFG.replace(lora_rank=2)
  params = transformer.init_params(cfg, jax.random.key(0))
  mask = lora.trainable_mask(params)
  optimizer = optax.adam(1e-2)
  state = create_train_state(params, optimizer, seed=0, trainable=mask)
  # Optimizer moments exist for the adapters only.
  moments = jax.tree.leaves(state.opt_state[0].mu)
  assert sum(x.size for x in moments) == sum(
      v.size for k, v in params["layers"].items() if lora.is_adapter(k))
  loss = lambda p, b, r: _row_mean_loss(p, b, r, cfg)
  step = jax.jit(make_train_step(loss, optimizer, trainable=mask))
  new, metrics = step(state, _batch(4))
  assert float(metrics["nonfinite"]) == 0.0
  for name, value in new.params["layers"].items():
    changed = not np.array_equal(value, params["layers"][name])
    assert changed == (name.endswith("_lora_a") or name.endswith("_lora_b")) or (
        name.endswith("_lora_a")), name
  assert np.array_equal(new.params["embedding"], params["embedding"])
  assert not np.array_equal(new.params["layers"]["q_lora_b"], params["layers"]["q_lora_b"])


def _config(**model):
  config = quickstart.get_config()
  for key, value in model.items():
    config.model[key] = value
  return config


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="only CPU devices report no memory")
def test_budget_plans_on_cpu_and_stops_a_run_that_cannot_fit(caplog):
  config = _config(preset="gemma2-2b", compute_dtype="bfloat16", remat="none")
  config.train.batch_size, config.lengths.prompt_buckets = 8, (512,)
  config.lengths.completion_buckets = (512,)
  with caplog.at_level(logging.INFO):
    budget = memory_budget.plan_run(config, (1, 1, 1))  # CPU: memory unknown, planned only.
  assert budget.device_bytes is None and "planned, not checked" in caplog.text
  assert budget.plan.num_params == 2_614_341_888  # Gemma 2 2B (embedding tied).
  gib = 1024**3
  with pytest.raises(memory.MemoryPlanError) as error:
    memory_budget.plan_run(config, (1, 1, 1), device_bytes=80 * gib)
  message = str(error.value)
  assert "model.remat=dots (now 'none')" in message
  assert "train.grad_accum_steps=1" in message


def test_auto_remat_picks_the_cheapest_policy_that_fits():
  config = _config(preset="gemma2-2b", compute_dtype="bfloat16")
  config.train.batch_size, config.lengths.prompt_buckets = 8, (512,)
  config.lengths.completion_buckets = (512,)
  peaks = {r: memory.plan_for_config(config, memory_budget.model_config(config, r), (1, 1, 1),
                                     on_policy=False).train_peak
           for r in ("none", "dots", "full")}
  assert peaks["full"] < peaks["dots"] < peaks["none"]
  roomy = memory_budget.plan_run(config, (1, 1, 1), device_bytes=int(peaks["none"] / 0.8))
  assert roomy.model_cfg.remat == "none"
  tight = memory_budget.plan_run(config, (1, 1, 1), device_bytes=int(peaks["dots"] / 0.85))
  assert tight.model_cfg.remat == "dots"
  lora_plan = memory_budget.plan_run(_config(preset="gemma2-2b", lora_rank=16), (1, 1, 1)).plan
  adapters = memory.adapter_elements(memory_budget.model_config(_config(preset="gemma2-2b",
                                                                        lora_rank=16)))
  # 26 layers x 16 x (q, k, v, o, gate, up, down in + out widths).
  assert adapters == 26 * 16 * (2 * (2304 + 2048) + 2 * (2304 + 1024) + 3 * (2304 + 9216))
  assert (lora_plan.optimizer, lora_plan.gradients) == (8 * adapters, 4 * adapters)
  assert lora_plan.reference == 0  # The base weights are the reference policy.


def test_invalid_knobs_are_named_at_start_up():
  config = _config(attention_impl="cudnn", remat="some", logits_chunk=-1)
  config.train.grad_accum_steps = 3
  with pytest.raises(ConfigError) as error:
    build_run_setup(config)
  message = str(error.value)
  assert "model.remat='some': must be one of ('auto', 'none', 'dots', 'full')" in message
  assert "model.logits_chunk=-1" in message
  assert "train.grad_accum_steps=3" in message
  config = _config(attention_impl="cudnn")  # float32: refused on every backend
  with pytest.raises(ConfigError, match="model.attention_impl='cudnn': needs "
                     "model.compute_dtype='bfloat16'"):
    build_run_setup(config)
  if jax.default_backend() == "cpu":
    with pytest.raises(ConfigError, match="model.attention_impl='cudnn': the cuDNN fused "
                       "attention kernel runs only on NVIDIA GPUs, this backend is 'cpu'"):
      build_run_setup(config)


def test_a_lora_run_through_the_launcher_lowers_the_loss(tmp_path, caplog):
  workdir = str(tmp_path / "lora")
  args = ["launch.main", f"--workdir={workdir}", "--config.model.lora_rank=8",
          "--config.model.lora_alpha=16.0", "--config.train.num_steps=40",
          "--config.train.batch_size=16", "--config.train.learning_rate=3e-2",
          "--config.train.warmup_steps=1", "--config.train.log_every=10",
          "--config.train.grad_accum_steps=2",
          "--config.task.num_train=256", "--config.task.num_test=8",
          "--config.eval.num_prompts=8", "--config.eval.num_samples=2",
          "--config.eval.prompt_batch_size=8"]
  with caplog.at_level(logging.INFO):
    assert main.run(args) == 0
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  losses = [r["loss"] for r in rows if "loss" in r]
  assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses
  assert "Train step memory per device, XLA vs plan" in caplog.text
  assert "Memory plan (model.remat=none chosen by remat='auto'" in caplog.text


def test_lora_on_policy_run_uses_the_base_as_reference(tmp_path):
  from bonjax.training import loop
  from bonjax.training.metrics_writer import read_metrics
  from tests.training.test_on_policy import tiny_on_policy_config
  config = tiny_on_policy_config("bond")  # KL to the reference and reference samples' scores.
  config.model.lora_rank = 4
  report = loop.train(config, str(tmp_path))
  records = [r for r in read_metrics(str(tmp_path)) if "loss" in r]
  assert [r["step"] for r in records] == [1, 2]
  assert all(np.isfinite(v) for r in records for v in r.values() if isinstance(v, float))
  # Two adapter steps from B = 0: the policy moved off its base (a Monte Carlo KL estimate,
  # exactly 0 only if the reference were the policy itself) but is still close to it.
  kl = report["diversity"]["kl_to_reference"]
  assert 0.0 < abs(kl) < 0.05, kl
