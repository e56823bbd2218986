"""A run's memory knobs, planned against the device before anything is compiled.

The knobs (all optional in a run config; defaults in MODEL_OPTION_DEFAULTS):

  model.remat           "auto" | "none" | "dots" | "full": rematerialisation of the layer stack;
                        "auto" takes the first of none, dots, full whose plan fits the device
                        ("none" where the device reports no memory, e.g. CPU)
  model.logits_chunk    output layer and log-probs in sequence chunks of this many tokens
                        (0: all at once)
  model.attention_impl  "xla" | "cudnn" (GPU, bfloat16, no attention soft-cap)
  model.lora_rank, model.lora_alpha, model.lora_targets: LoRA adapters (bonjax/models/lora.py)
  train.grad_accum_steps  micro-batches per optimizer step

`plan_run` turns them into the run's ModelConfig and a `bonjax.parallel.memory` plan of the
bytes per device (parameters, optimizer state, gradients, activations, KV cache, reference),
logs the plan, and stops a run whose plan exceeds the device's memory with a message naming the
knob to turn. `log_compiled_memory` puts XLA's own figures for the compiled train step next to
the plan.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Sequence

import jax
import ml_collections

from bonjax.models import attention
from bonjax.models import lora
from bonjax.models import transformer
from bonjax.models.config import ModelConfig
from bonjax.objectives import registry as objective_registry
from bonjax.parallel import memory
from bonjax.training import model_source

MODEL_OPTION_DEFAULTS: dict[str, Any] = {
    "remat": "auto",
    # Tokens per output-layer chunk: 1024 x a 256k vocabulary is 1 GiB of float32 logits.
    "logits_chunk": 1024,
    "attention_impl": "xla",
    "lora_rank": 0,
    "lora_alpha": 16.0,
    "lora_targets": tuple(lora.TARGETS),
}

# model.remat="auto" tries these in order (cheapest recomputation first).
AUTO_REMAT_ORDER = ("none", "dots", "full")


def model_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The memory and fine-tuning options of `config.model`, defaults filled in."""
  section = config.get("model", ml_collections.ConfigDict())
  options = {name: section.get(name, default) for name, default in MODEL_OPTION_DEFAULTS.items()}
  options["lora_targets"] = tuple(options["lora_targets"])
  options["logits_chunk"] = int(options["logits_chunk"] or 0) or None
  return options


def grad_accum_steps(config: ml_collections.ConfigDict) -> int:
  return int(config.train.get("grad_accum_steps", 1))


def model_config(config: ml_collections.ConfigDict, remat: str | None = None) -> ModelConfig:
  """The run's ModelConfig: `model.preset` with the options; remat "auto" becomes `remat`
  (or "none")."""
  options = model_options(config)
  if options["remat"] == "auto":
    options["remat"] = remat or "none"
  return model_source.architecture(config).replace(**options)


def option_problems(config: ml_collections.ConfigDict, batch_shards: int) -> list[str]:
  """One "field=value: rule" message per invalid knob (empty when all are valid)."""
  options = model_options(config)
  problems = []
  remats = ("auto", *transformer.REMAT_POLICIES)
  if options["remat"] not in remats:
    problems.append(f"model.remat={options['remat']!r}: must be one of {remats}")
  raw_chunk = config.get("model", {}).get("logits_chunk", 0)
  if not isinstance(raw_chunk, int) or raw_chunk < 0:
    problems.append(f"model.logits_chunk={raw_chunk!r}: must be an int >= 0 (0: no chunks)")
  if options["attention_impl"] not in attention.ATTENTION_IMPLS:
    problems.append(f"model.attention_impl={options['attention_impl']!r}: must be one of "
                    f"{tuple(attention.ATTENTION_IMPLS)}")
  steps = config.train.get("grad_accum_steps", 1)
  rows = config.train.batch_size // max(batch_shards, 1)
  if not isinstance(steps, int) or steps < 1 or rows % steps:
    problems.append(f"train.grad_accum_steps={steps!r}: must be an int >= 1 dividing the "
                    f"{rows} prompts per batch shard (train.batch_size / (mesh.data x mesh.fsdp))")
  if problems:
    return problems
  try:
    cfg = model_config(config)
    lora.check_lora(cfg)
  except (KeyError, ValueError) as e:
    return [str(e.args[0] if e.args else e)]
  return attention.attention_impl_problems(cfg, jax.default_backend(),
                                           config.model.compute_dtype)


@dataclasses.dataclass(frozen=True)
class MemoryBudget:
  """The planned run.

  Attributes:
    model_cfg: the run's ModelConfig (remat "auto" resolved).
    plan: the per-device plan.
    device_bytes: memory of one device, or None where the device does not report it.
  """

  model_cfg: ModelConfig
  plan: memory.MemoryPlan
  device_bytes: int | None


def plan_run(config: ml_collections.ConfigDict, mesh_shape: Sequence[int] | dict[str, int],
             device_bytes: int | None = None, check: bool = True) -> MemoryBudget:
  """Plans the run's memory per device and checks it against the device.

  Args:
    config: validated run config.
    mesh_shape: (data, fsdp, tensor) sizes or a dict of them.
    device_bytes: memory of one device; None asks the first local device (CPU: unknown).
    check: stop a run that does not fit (False: only plan).

  Returns:
    The budget (its plan is logged).

  Raises:
    memory.MemoryPlanError: the run does not fit; the message names the knobs to turn.
  """
  device_bytes = memory.device_memory_bytes() if device_bytes is None else device_bytes
  auto = model_options(config)["remat"] == "auto"
  candidates = AUTO_REMAT_ORDER if auto and device_bytes is not None else (None,)
  for i, remat in enumerate(candidates):
    cfg = model_config(config, remat)
    plan = memory.plan_for_config(config, cfg, mesh_shape,
                                  on_policy=objective_registry.trains_on_samples(config.algorithm))
    last = i == len(candidates) - 1
    if device_bytes is None or not check:
      break
    try:
      memory.check_fits(plan, device_bytes)
      break
    except memory.MemoryPlanError:
      if last:
        raise
  where = ("device memory unknown (e.g. CPU): planned, not checked" if device_bytes is None
           else f"device memory {memory.format_bytes(device_bytes)}")
  logging.info("Memory plan (model.remat=%s%s; %s):\n%s", cfg.remat,
               " chosen by remat='auto'" if auto else "", where, plan.table())
  return MemoryBudget(model_cfg=cfg, plan=plan, device_bytes=device_bytes)


def compiled_memory(compiled: Any) -> dict[str, int] | None:
  """XLA's memory analysis of a compiled function (bytes), or None where unavailable."""
  try:
    analysis = compiled.memory_analysis()
  except Exception:  # Some backends do not implement it.
    return None
  if analysis is None:
    return None
  names = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
           "temp_size_in_bytes", "generated_code_size_in_bytes")
  return {name: int(getattr(analysis, name, 0)) for name in names}


def log_compiled_memory(compiled: Any, plan: memory.MemoryPlan | None) -> dict[str, int] | None:
  """Logs XLA's memory analysis of the compiled train step next to the plan's estimate."""
  figures = compiled_memory(compiled)
  if figures is None or plan is None:
    return figures
  fmt = memory.format_bytes
  # Arguments are the state and the batch; temporaries are gradients and activations.
  logging.info(
      "Train step memory per device, XLA vs plan: arguments %s vs %s (parameters + optimizer + "
      "batch), temporaries %s vs %s (gradients + activations), total %s vs train peak %s",
      fmt(figures["argument_size_in_bytes"]), fmt(plan.parameters + plan.optimizer + plan.batch),
      fmt(figures["temp_size_in_bytes"]), fmt(plan.gradients + plan.activations),
      fmt(figures["argument_size_in_bytes"] + figures["temp_size_in_bytes"]),
      fmt(plan.train_peak))
  return figures
