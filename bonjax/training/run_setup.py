"""Everything a run builds once from its config: model, tokenizer, task, mesh, shardings."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bonjax.data.batching import encode_prompt
from bonjax.data.example import TaskExample
from bonjax.models import lora
from bonjax.models import transformer
from bonjax.models.config import ModelConfig
from bonjax.objectives import registry as objective_registry
from bonjax.parallel import sharding as sharding_lib
from bonjax.parallel.mesh import make_mesh
from bonjax.sampling import sampler as sampler_lib
from bonjax.tokenizers.base import Tokenizer
from bonjax.parallel.memory import MemoryPlanError
from bonjax.training import memory_budget
from bonjax.training.config_validation import ConfigError, validate_config
from bonjax.training.model_source import model_and_tokenizer
from bonjax.training.state import TrainState, create_train_state
from bonjax.training.tasks import Task, build_task

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass
class RunSetup:
  """The static pieces of a run.

  Attributes:
    config: the validated run config.
    model_cfg: architecture.
    tokenizer: text <-> ids.
    task: examples and verifier.
    mesh: device mesh (data, fsdp, tensor).
    compute_dtype: activation dtype.
    memory_plan: the start-up memory plan per device (`bonjax.training.memory_budget`).
  """

  config: ml_collections.ConfigDict
  model_cfg: ModelConfig
  tokenizer: Tokenizer
  task: Task
  mesh: Mesh
  compute_dtype: Any
  memory_plan: Any = None

  @property
  def prompt_buckets(self) -> tuple[int, ...]:
    return tuple(self.config.lengths.prompt_buckets)

  @property
  def completion_buckets(self) -> tuple[int, ...]:
    return tuple(self.config.lengths.completion_buckets)

  @property
  def stop_ids(self) -> int | tuple[int, ...]:
    """The token(s) that end a completion: every EOS id an HF checkpoint declares."""
    ids = tuple(getattr(self.tokenizer, "stop_ids", None) or (self.tokenizer.eos_id,))
    return ids[0] if len(ids) == 1 else ids  # One id: the sampler's compile key is unchanged.

  def format_prompt(self, example: TaskExample) -> str:
    """Prompt text the model sees for `example`: the task prompt, or `task.template`
    filled with it (`{prompt}`) and its metadata (e.g. `{expression}`, a data row's fields),
    wrapped in the tokenizer's chat template when `task.chat_template` is set
    (instruction-tuned models)."""
    task = self.config.task
    text = example.prompt
    if task.get("template"):
      text = task.template.format_map({**example.metadata, "prompt": example.prompt})
    if task.get("chat_template"):
      text = self.tokenizer.chat_prompt(text)
    return text

  def batch_sharding(self, ndim: int) -> NamedSharding:
    """Sharding of an array whose leading axis is the prompt batch."""
    batch_axes = sharding_lib.DEFAULT_RULES["batch"]
    return NamedSharding(self.mesh, PartitionSpec(batch_axes, *([None] * (ndim - 1))))

  def shard_batch(self, batch: Any) -> Any:
    """Places a host pytree of [B, ...] arrays on the mesh, split over the batch axis."""
    return jax.tree.map(lambda x: jax.device_put(np.asarray(x), self.batch_sharding(np.ndim(x))),
                        batch)

  def abstract_params(self) -> Any:
    """Shapes and dtypes of the model's parameters (jax.ShapeDtypeStruct), none allocated."""
    return jax.eval_shape(lambda: transformer.init_params(self.model_cfg, jax.random.key(0)))

  def abstract_train_state(self, optimizer: Any, with_anchor: bool = False,
                           boxed: bool = False) -> TrainState:
    """Shapes and dtypes of a fresh TrainState of this model, none allocated.

    Args:
      optimizer: the optax transformation (its moments are part of the state).
      with_anchor: whether the state carries an EMA anchor copy of the params (`aux`).
      boxed: whether the parameter leaves (and the optimizer moments that follow them) are
        boxed with their logical axis names, for `sharding_lib.boxed_shardings`.

    Returns:
      A TrainState of jax.ShapeDtypeStruct leaves (LogicallyPartitioned boxes when `boxed`).
    """
    params = self.abstract_params()
    trainable = lora.trainable_mask(params)  # Read from the unboxed tree: boxes hide the paths.
    if boxed:
      params = sharding_lib.box_logical(params, transformer.param_logical_axes(self.model_cfg))
    aux = {"anchor": params} if with_anchor else None
    return jax.eval_shape(lambda p, a: create_train_state(p, optimizer, 0, a, trainable),
                          params, aux)

  def param_shardings(self) -> Any:
    return sharding_lib.tree_shardings(transformer.param_logical_axes(self.model_cfg),
                                       self.abstract_params(), self.mesh)

  def init_params(self, seed: int) -> Any:
    """Random parameters, created directly in their sharded layout."""
    init = jax.jit(lambda key: transformer.init_params(self.model_cfg, key),
                   out_shardings=self.param_shardings())
    return init(jax.random.key(seed))

  def sampling_params(self, section: ml_collections.ConfigDict,
                      num_samples: int | None = None) -> sampler_lib.SamplingParams:
    """Sampler settings of a config section with the sampling fields (`config.sampling` or
    `config.eval`): its num_samples (or `num_samples`), length, temperature, top-k / top-p,
    and the tokenizer's stop and pad ids."""
    return sampler_lib.SamplingParams(
        num_samples=section.num_samples if num_samples is None else num_samples,
        max_new_tokens=section.max_new_tokens, temperature=section.temperature,
        top_k=section.top_k, top_p=section.top_p, eos_id=self.stop_ids,
        pad_id=self.tokenizer.pad_id)

  def sample(self, params: Any, sampling: sampler_lib.SamplingParams, prompt_tokens: np.ndarray,
             prompt_valid: np.ndarray, prompt_ids: np.ndarray, rng: jax.Array,
             step: int) -> sampler_lib.Rollout:
    """Runs the sampler on the mesh with prompts split over the batch axis."""
    tokens, valid, ids = self.shard_batch((prompt_tokens, prompt_valid, prompt_ids))
    return sampler_lib.sample(params, self.model_cfg, sampling, tokens, valid, ids, rng,
                              jnp.asarray(step, jnp.int32), compute_dtype=self.compute_dtype)


def _check_fit(config: ml_collections.ConfigDict, model_cfg: ModelConfig, tokenizer: Tokenizer,
               mesh: Mesh) -> list[str]:
  problems = []
  if tokenizer.vocab_size > model_cfg.vocab_size:
    problems.append(f"model.preset={config.model.preset!r}: vocab_size {model_cfg.vocab_size} is "
                    f"smaller than the tokenizer's {tokenizer.vocab_size}")
  shards = mesh.shape["data"] * mesh.shape["fsdp"]
  for field in ("train.batch_size", "eval.prompt_batch_size"):
    section, name = field.split(".")
    value = config[section][name]
    if value % shards:
      problems.append(f"{field}={value}: must be divisible by the {shards} batch shards of the "
                      f"mesh (data x fsdp = {mesh.shape['data']} x {mesh.shape['fsdp']})")
  return problems


def _check_lengths(setup: RunSetup) -> list[str]:
  """The task's longest prompt (as the model sees it) must fit the largest prompt bucket, and
  for SFT its longest gold answer plus EOS the largest completion bucket: checked at start-up
  rather than at the batch that first draws that example."""
  problems = []
  examples = [*setup.task.train, *setup.task.test]
  try:
    length, example = max(((len(encode_prompt(setup.tokenizer, setup.format_prompt(e))), e.id)
                           for e in examples), key=lambda pair: pair[0])
  except ValueError as e:  # A template or prompt the tokenizer cannot encode.
    return [f"task.template={setup.config.task.get('template', '')!r}: a formatted prompt "
            f"cannot be encoded by tokenizer {setup.config.tokenizer.name!r} ({e})"]
  except (KeyError, IndexError) as e:  # A template field that an example does not have.
    return [f"task.template={setup.config.task.template!r}: names a field the examples do "
            f"not have ({type(e).__name__}: {e})"]
  if length > max(setup.prompt_buckets):
    problems.append(f"lengths.prompt_buckets={setup.prompt_buckets}: the longest prompt "
                    f"({example}) has {length} tokens; the largest bucket must be >= {length}")
  answers = [(len(setup.tokenizer.encode(e.answer)) + 1, e.id) for e in examples
             if e.answer is not None]
  if not objective_registry.trains_on_samples(setup.config.algorithm) and answers:
    length, example = max(answers, key=lambda pair: pair[0])
    if length > max(setup.completion_buckets):
      problems.append(f"lengths.completion_buckets={setup.completion_buckets}: the longest gold "
                      f"answer ({example}) has {length} tokens with EOS; the largest bucket "
                      f"must be >= {length}")
  return problems


def build_run_setup(config: ml_collections.ConfigDict) -> RunSetup:
  """Validates `config` and builds the run's static pieces.

  Raises:
    ConfigError: every problem found, each naming the field, the value and the rule.
  """
  validate_config(config)
  try:
    model_cfg, tokenizer = model_and_tokenizer(config)  # the architecture; options below
    task = build_task(config)
    mesh = make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
  except (KeyError, ValueError) as e:
    raise ConfigError(f"invalid config:\n  {e.args[0] if e.args else e}") from None
  setup = RunSetup(config=config, model_cfg=model_cfg, tokenizer=tokenizer, task=task, mesh=mesh,
                   compute_dtype=_DTYPES[config.model.compute_dtype])
  problems = (_check_fit(config, model_cfg, tokenizer, mesh) + _check_lengths(setup)
              + memory_budget.option_problems(config, mesh.shape["data"] * mesh.shape["fsdp"]))
  if problems:
    raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
  try:  # Memory knobs: planned (and "auto" resolved) before anything is compiled.
    budget = memory_budget.plan_run(config, dict(mesh.shape))
  except MemoryPlanError as e:
    raise ConfigError(str(e)) from None
  return dataclasses.replace(setup, model_cfg=budget.model_cfg, memory_plan=budget.plan)
