"""The memory planner against jax and XLA, and its verdicts on configs that cannot fit.

Margins, for float32 compute:
  - parameters + optimizer state + batch equal the compiled train step's argument bytes, and
    parameters the sampler's, within 0.5% (only scalars such as Adam's step count are not
    planned);
  - the saved residuals equal what jax's autodiff keeps (print_saved_residuals) within 1%;
  - gradients + activations, and kv cache + sampler working set, are within 25% of the
    compiled programs' temporary bytes (XLA's buffer assignment is not planned in detail).
"""

from __future__ import annotations

import contextlib
import io
import math
import re

import jax
from jax.ad_checkpoint import print_saved_residuals
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.models import transformer
from bonjax.models.config import get_preset
from bonjax.models.logprobs import sequence_logprobs
from bonjax.parallel import memory
from bonjax.sampling import sampler as sampler_lib
from experiments import quickstart
from tests.parallel.test_golden_shardings import (FAST_COMPILE, abstract_train_step,
                                                  compile_sampler, mesh_of)

TEMP_MARGIN = 0.25
ARGUMENT_MARGIN = 0.005


# ----------------------------------------------------------------------------------------------
# Layout and residuals (no compilation).
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["tiny", "smollm2-135m", "gemma3-270m"])
def test_parameter_layout_is_the_models(preset):
  cfg = get_preset(preset)
  shapes = jax.eval_shape(lambda: transformer.init_params(cfg, jax.random.key(0)))
  axes = transformer.param_logical_axes(cfg)
  flat_shapes = {"/".join(k.key for k in path): tuple(x.shape)
                 for path, x in jax.tree_util.tree_leaves_with_path(shapes)}
  flat_axes = {"/".join(k.key for k in path): tuple(a) for path, a in
               jax.tree_util.tree_leaves_with_path(axes, is_leaf=lambda x: isinstance(x, tuple))}
  layout = memory.parameter_layout(cfg)
  assert {k: s for k, (s, _) in layout.items()} == flat_shapes
  assert {k: a for k, (_, a) in layout.items()} == flat_axes
  plan = memory.plan_memory(cfg, (1, 1, 1), memory.Workload(batch_size=1))
  assert plan.num_params == cfg.num_params()
  assert plan.parameters == 4 * cfg.num_params()


_BYTES = {"f32": 4, "bf16": 2, "i32": 4, "u32": 4, "bool": 1}


def jax_residual_bytes(fn, *args) -> int:
  """Bytes of what jax's autodiff saves for the backward pass of `fn`, arguments excluded."""
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    print_saved_residuals(fn, *args)
  total = 0
  for line in out.getvalue().splitlines():
    match = re.match(r"(\w+)\[([\d,]*)\] (.*)", line)
    assert match, line
    dtype, dims, source = match.groups()
    if "from the argument" in source:
      continue
    total += _BYTES[dtype] * math.prod(int(d) for d in dims.split(",") if d)
  return total


@pytest.mark.parametrize("preset, overrides, remat, chunk", [
    ("tiny", {}, False, None),
    ("tiny", {}, True, None),
    ("tiny", {}, False, 8),
    # The real presets' architectures (GQA groups of 3; Gemma 3's q/k norms, post-norms, GeGLU)
    # at a small width, so the check traces quickly.
    ("smollm2-135m", dict(num_layers=3, d_model=48, mlp_dim=96, vocab_size=300), False, None),
    ("gemma3-270m", dict(num_layers=7, d_model=40, mlp_dim=72, head_dim=16, vocab_size=200),
     False, None),
])
def test_saved_residuals_match_jax(preset, overrides, remat, chunk):
  cfg = get_preset(preset, **overrides)
  rows, span = 6, 20
  params = jax.eval_shape(lambda: transformer.init_params(cfg, jax.random.key(0)))
  tokens = jax.ShapeDtypeStruct((rows, span), jnp.int32)
  mask = jax.ShapeDtypeStruct((rows, span), jnp.bool_)
  loss = lambda p, t, v, m: sequence_logprobs(p, cfg, t, v, m, remat=remat,
                                              vocab_chunk=chunk)[0].sum()
  measured = jax_residual_bytes(loss, params, tokens, mask, mask)
  planned = memory.saved_residual_bytes(cfg, {"data": 1, "fsdp": 1, "tensor": 1}, rows, span,
                                        remat=remat, vocab_chunk=chunk)
  assert planned == pytest.approx(measured, rel=0.01)


# ----------------------------------------------------------------------------------------------
# Planned against compiled (tiny model).
# ----------------------------------------------------------------------------------------------

BATCH, PROMPT, COMPLETION, SAMPLES = 16, 16, 16, 8


def _within(measured: int, planned: int, margin: float) -> bool:
  return abs(measured - planned) <= margin * planned


@pytest.mark.parametrize("layout", [
    (2, 2, 2),
    pytest.param((1, 1, 1), marks=pytest.mark.slow),
    pytest.param((8, 1, 1), marks=pytest.mark.slow),
    pytest.param((1, 1, 8), marks=pytest.mark.slow),
])
def test_plan_matches_compiled_memory(layout):
  cfg = get_preset("tiny")
  mesh = mesh_of(layout)
  plan = memory.plan_memory(cfg, layout, memory.Workload(
      batch_size=BATCH, num_samples=1, prompt_len=PROMPT, completion_len=COMPLETION,
      sample_num_samples=SAMPLES))
  step, state, batch = abstract_train_step(cfg, mesh, BATCH, PROMPT + COMPLETION)
  train = step.lower(state, batch).compile(FAST_COMPILE).memory_analysis()
  sampling = sampler_lib.SamplingParams(num_samples=SAMPLES, max_new_tokens=COMPLETION)
  sample = compile_sampler(cfg, mesh, sampling, BATCH, PROMPT).memory_analysis()

  report = (f"mesh {layout}: train arguments {train.argument_size_in_bytes} temp "
            f"{train.temp_size_in_bytes}; sampler arguments {sample.argument_size_in_bytes} "
            f"temp {sample.temp_size_in_bytes}\n{plan.table()}")
  assert _within(train.argument_size_in_bytes, plan.parameters + plan.optimizer + plan.batch,
                 ARGUMENT_MARGIN), report
  assert _within(sample.argument_size_in_bytes, plan.parameters, ARGUMENT_MARGIN), report
  assert _within(train.temp_size_in_bytes, plan.gradients + plan.activations, TEMP_MARGIN), report
  assert _within(sample.temp_size_in_bytes, plan.kv_cache + plan.sampling, TEMP_MARGIN), report


def test_sharding_divides_what_it_should():
  cfg = get_preset("tiny")
  work = memory.Workload(batch_size=16, num_samples=4, prompt_len=16, completion_len=16)
  one = memory.plan_memory(cfg, (1, 1, 1), work)
  fsdp = memory.plan_memory(cfg, (1, 8, 1), work)
  data = memory.plan_memory(cfg, (8, 1, 1), work)
  # Every tiny parameter has a dimension divisible by 8 on the fsdp ("embed") axis.
  assert fsdp.parameters * 8 == one.parameters
  assert (fsdp.optimizer, fsdp.gradients) == (one.optimizer // 8, one.gradients // 8)
  assert data.parameters == one.parameters  # Data parallelism replicates parameters,
  assert data.kv_cache * 8 == one.kv_cache  # and splits prompts with their caches.
  # Exact sizes of the caches: 4 layers x 2 KV heads x 32 dims x (K and V) x float32.
  per_token = 4 * 2 * 32 * 2 * 4
  assert one.kv_cache == 16 * (16 + 4 * 16) * per_token
  assert one.batch == 64 * 32 * 6


# ----------------------------------------------------------------------------------------------
# Verdicts.
# ----------------------------------------------------------------------------------------------

GIB = 1024**3


def test_a_fitting_run_passes_and_prints_a_table():
  cfg = get_preset("smollm2-135m")
  plan = memory.plan_memory(cfg, (4, 2, 1), memory.Workload(
      batch_size=32, num_samples=4, prompt_len=128, completion_len=128, remat=True,
      compute_dtype="bfloat16"))
  assert memory.check_fits(plan, 16 * GIB) == plan.peak
  table = plan.table()
  for name in plan.components():
    assert name in table
  assert f"{plan.parameters / 1024**2:.1f}" in table
  assert "mesh data=4 fsdp=2 tensor=1 (8 devices)" in table


def test_activations_that_cannot_fit_name_batch_size_and_remat():
  cfg = get_preset("gemma3-270m")
  plan = memory.plan_memory(cfg, (1, 1, 1), memory.Workload(
      batch_size=64, num_samples=16, prompt_len=256, completion_len=256))
  with pytest.raises(memory.MemoryPlanError) as error:
    memory.check_fits(plan, 16 * GIB)
  message = str(error.value)
  assert "training needs" in message and "largest parts: activations" in message
  assert "lower train.batch_size=64 or raise train.grad_accum_steps=1" in message
  assert "model.remat=dots (now 'none')" in message
  assert "model.logits_chunk" in message  # 262,144-way logits dominate.
  assert "mesh.data x mesh.fsdp = 1" in message


def test_parameters_that_cannot_fit_name_fsdp():
  cfg = get_preset("gemma3-270m")
  plan = memory.plan_memory(cfg, (4, 1, 1), memory.Workload(
      batch_size=4, num_samples=1, prompt_len=16, completion_len=16, remat=True))
  with pytest.raises(memory.MemoryPlanError, match=r"raise mesh.fsdp \(now 1\)"):
    memory.check_fits(plan, 4 * GIB)
  # The same run split over fsdp=4 fits.
  sharded = memory.plan_memory(cfg, (1, 4, 1), plan.workload)
  assert memory.check_fits(sharded, 4 * GIB) == sharded.peak


def test_a_kv_cache_that_cannot_fit_names_num_samples():
  cfg = get_preset("smollm2-135m")
  plan = memory.plan_memory(cfg, (8, 1, 1), memory.Workload(
      batch_size=64, num_samples=1, prompt_len=512, completion_len=64, remat=True,
      sample_num_samples=512, sample_len=1024, sample_batch_size=256, sampler_config="eval"))
  with pytest.raises(memory.MemoryPlanError) as error:
    memory.check_fits(plan, 16 * GIB)
  message = str(error.value)
  assert "sampling needs" in message and "training needs" not in message
  assert "lower eval.num_samples=512, eval.prompt_batch_size=256" in message


def test_plan_for_config_reads_the_run_config():
  config = quickstart.get_config()
  cfg = get_preset(config.model.preset)
  sft_plan = memory.plan_for_config(config, cfg, (8, 1, 1), on_policy=False)
  w = sft_plan.workload
  assert (w.batch_size, w.num_samples, w.prompt_len, w.completion_len) == (64, 1, 16, 8)
  assert (w.sample_batch_size, w.sample_num_samples, w.sampler_config) == (50, 16, "eval")
  assert w.reference_copies == 0
  config.algorithm = "bon_rl"
  rl = memory.plan_for_config(config, cfg, (8, 1, 1), on_policy=True).workload
  assert (rl.num_samples, rl.completion_len, rl.reference_copies) == (16, 8, 1)
  assert (rl.sample_batch_size, rl.sampler_config) == (64, "sampling")


def test_start_up_check_of_a_run_config():
  config = quickstart.get_config()
  cfg = get_preset(config.model.preset)
  # CPU devices report no memory limit: the plan is made and the check skipped.
  assert memory.device_memory_bytes() is None
  plan = memory.check_config_fits(config, cfg, (8, 1, 1), on_policy=False)
  assert plan.workload.batch_size == 64
  with pytest.raises(memory.MemoryPlanError, match="lower train.batch_size=64"):
    memory.check_config_fits(config, cfg, (8, 1, 1), on_policy=False, memory_bytes=plan.peak)


def test_bad_workloads_are_explained():
  with pytest.raises(ValueError, match="memory plan: num_samples=0: must be >= 1"):
    memory.Workload(batch_size=4, num_samples=0)
  with pytest.raises(ValueError, match="optimizer='lion'"):
    memory.Workload(batch_size=4, optimizer="lion")
  with pytest.raises(ValueError, match="needs one size >= 1 per axis"):
    memory.plan_memory(get_preset("tiny"), (2, 2), memory.Workload(batch_size=4))
  assert np.isclose(memory.plan_memory(get_preset("tiny"), {"data": 2},
                                       memory.Workload(batch_size=4)).mesh_shape["data"], 2)
