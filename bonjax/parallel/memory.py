"""Per-device memory plan of a run: parameters, optimizer, gradients, activations, KV cache.

`plan_memory` counts, for one device of a (data, fsdp, tensor) mesh, the bytes a training step
and a sampler call hold at their peak, from the architecture and the workload alone (nothing is
traced or allocated, so it is instant for any model size). `check_fits` compares the plan with a
device's memory and, when it does not fit, raises an error that names the config knobs that
shrink the largest parts.

What is counted (bytes per device):

  parameters   every parameter (float32), split as the logical-axis rules split it, plus
               LoRA adapters (replicated) when the config declares them
  optimizer    the optimizer's float32 buffers (Adam: 2 moments) per trained parameter (all
               of them, or only the LoRA adapters)
  gradients    one float32 gradient per trained parameter (two with gradient accumulation)
  reference    frozen reference-policy copies in their dtype (none for a LoRA run, whose base
               weights are the reference)
  batch        the training step's token / mask arrays
  activations  what the backward pass keeps (the saved residuals of every layer, the output
               log-probabilities) plus its working set (the cotangents of one layer and of
               the logits), compute-dtype weight copies, and one layer's weights gathered
               over fsdp
  kv cache     the sampler's prompt cache (once per prompt) and completion cache (per sample)
  sampling     the sampler's working set: the prefill's key/value staging copy, one layer's
               activations over the prompts, its per-layer copy of the weights, the logits of
               every sample

The activation counts follow this implementation's backward pass (the residuals that
`jax.ad_checkpoint.print_saved_residuals` lists for `sequence_logprobs` with float32 compute,
per token and layer); tests check them against jax and against `compiled.memory_analysis()` of
the jitted train step and sampler. Sizes are split over the mesh the way the sharding rules
split the arrays (prompt rows over data x fsdp, heads / MLP / vocabulary over tensor when
divisible). Training gathers weights over fsdp one layer at a time (ZeRO-3); the sampler
gathers its per-layer copy once per call.

The memory knobs enter as a run sets them (`bonjax.training.memory_budget`, which calls
`plan_for_config` at start-up): model.remat ("full" keeps each layer's input, "dots" also the
projections' outputs: an estimate, not checked against jax), model.logits_chunk (the output
layer's logits of one chunk of tokens at a time), train.grad_accum_steps (activations of one
micro-batch) and LoRA (model.lora_rank).

bfloat16 compute is planned with the float32 activation counts plus the bfloat16 weight copies
that the backward pass and the sampler keep. On the tiny model the train step's plan is then
within 1% of XLA's figure on CPU, while the CPU sampler used about 1.7x the plan (not
investigated); the tests hold float32 to its margins.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import jax
from jax.sharding import AbstractMesh

from bonjax.parallel.mesh import MESH_AXES
from bonjax.parallel.sharding import DEFAULT_RULES, partition_spec

if TYPE_CHECKING:  # Only for annotations: parallel/ imports no model code.
  from bonjax.models.config import ModelConfig

DTYPE_BYTES: dict[str, int] = {"float32": 4, "bfloat16": 2, "float16": 2}

# Optimizer name -> parameter-shaped float32 buffers it keeps.
OPTIMIZER_BUFFERS: dict[str, int] = {"adam": 2, "adamw": 2, "momentum": 1, "sgd": 0}

# Activation -> [*, mlp_dim]-sized float32 tensors one layer's backward pass keeps per token.
_MLP_SAVED: dict[str, int] = {"silu": 6, "gelu_tanh": 8}

_MIB = 1024**2

# model.remat -> per token and layer, the float32 tensors the backward pass keeps, as a
# function (cfg, heads, kv_heads, mlp) -> floats; None: every residual (`_layer_residual_bytes`).
_REMAT_SAVED: dict[str, Callable[..., int] | None] = {
    "none": None,
    # The layer input and the outputs of the matmuls without batch dimensions (q, k, v, o, gate,
    # up, down projections); attention and elementwise work is recomputed.
    "dots": lambda cfg, h, k, f: 3 * cfg.d_model + (h + 2 * k) * cfg.head_dim + 2 * f,
    "full": lambda cfg, h, k, f: cfg.d_model,
}

ParamLayout = dict[str, tuple[tuple[int, ...], tuple[str, ...]]]


def parameter_layout(cfg: "ModelConfig") -> ParamLayout:
  """Shape and logical axes of every parameter, keyed by its path ("layers/q").

  The same layout `bonjax.models.transformer` declares (a test holds them equal); kept here
  so planning needs no model code.
  """
  n, d, h, k = cfg.num_layers, cfg.d_model, cfg.num_heads, cfg.num_kv_heads
  hd, f, v = cfg.head_dim, cfg.mlp_dim, cfg.vocab_size
  stream = ((n, d), ("layers", "embed"))
  layout: ParamLayout = {"embedding": ((v, d), ("vocab", "embed")),
                         "final_norm": ((d,), ("embed",))}
  if not cfg.tie_embeddings:
    layout["unembedding"] = ((v, d), ("vocab", "embed"))
  layers: ParamLayout = {
      "attn_norm": stream, "mlp_norm": stream,
      "q": ((n, d, h, hd), ("layers", "embed", "q_heads", "head_dim")),
      "k": ((n, d, k, hd), ("layers", "embed", "kv_heads", "head_dim")),
      "v": ((n, d, k, hd), ("layers", "embed", "kv_heads", "head_dim")),
      "o": ((n, h, hd, d), ("layers", "q_heads", "head_dim", "embed")),
      "gate": ((n, d, f), ("layers", "embed", "mlp")),
      "up": ((n, d, f), ("layers", "embed", "mlp")),
      "down": ((n, f, d), ("layers", "mlp", "embed")),
  }
  if cfg.qk_norm:
    layers["q_norm"] = layers["k_norm"] = ((n, hd), ("layers", "head_dim"))
  if cfg.qkv_bias:
    layers["q_bias"] = ((n, h, hd), ("layers", "q_heads", "head_dim"))
    layers["k_bias"] = layers["v_bias"] = ((n, k, hd), ("layers", "kv_heads", "head_dim"))
  if cfg.post_norms:
    layers["post_attn_norm"] = layers["post_mlp_norm"] = stream
  layout.update({f"layers/{name}": entry for name, entry in layers.items()})
  return layout


def abstract_mesh(mesh_shape: Sequence[int] | Mapping[str, int]) -> AbstractMesh:
  """A device-less mesh of `mesh_shape` ((data, fsdp, tensor) sizes, or a dict of them)."""
  if isinstance(mesh_shape, Mapping):
    mesh_shape = [int(mesh_shape.get(axis, 1)) for axis in MESH_AXES]
  sizes = tuple(int(s) for s in mesh_shape)
  if len(sizes) != len(MESH_AXES) or min(sizes) < 1:
    raise ValueError(f"mesh shape {sizes}: needs one size >= 1 per axis {MESH_AXES}")
  return AbstractMesh(sizes, MESH_AXES)


def shard_elements(shape: Sequence[int], logical_axes: Sequence[str | None],
                   mesh: AbstractMesh, rules: Mapping[str, Sequence[str]] = DEFAULT_RULES) -> int:
  """Elements of one array that a single device holds, under the logical-axis rules."""
  spec = partition_spec(logical_axes, shape, mesh, rules)
  count = 1
  for size, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    axes = () if axes is None else ((axes,) if isinstance(axes, str) else axes)
    count *= size // math.prod(mesh.shape[a] for a in axes)
  return count


@dataclasses.dataclass(frozen=True)
class Workload:
  """What a run computes, as far as memory goes.

  Attributes:
    batch_size: prompts per training step (global, all devices).
    num_samples: N completions per prompt in training (1 for SFT on gold answers).
    prompt_len: padded prompt length P.
    completion_len: padded completion length L.
    compute_dtype: matmul input dtype ("float32" or "bfloat16").
    optimizer: key of OPTIMIZER_BUFFERS.
    remat: rematerialisation of the layer stack (model.remat): "none", "dots" (matmul outputs
      kept, the rest recomputed) or "full" (only layer inputs kept); True / False mean "full" /
      "none".
    vocab_chunk: log-probabilities scan the vocabulary in chunks of this many ids (None: the
      full [rows, T, V] logits).
    logits_chunk: the output layer runs over sequence chunks of this many tokens
      (model.logits_chunk; None: all at once).
    grad_accum_steps: micro-batches per step (train.grad_accum_steps); activations are those of
      one micro-batch, plus an accumulated gradient.
    reference_dtype: dtype of the reference copies ("float32" or the compute dtype).
    sample_batch_size: prompts per sampler call (None: batch_size).
    sample_num_samples: N per sampler call (None: num_samples).
    sample_len: completion length of sampler calls (None: completion_len).
    reference_copies: extra parameter-sized float32 trees kept on device (a frozen reference
      policy, an EMA anchor).
    sampler_config: config section that sets the sampler's N and length ("sampling" or
      "eval"), named in advice.
  """

  batch_size: int
  num_samples: int = 1
  prompt_len: int = 64
  completion_len: int = 64
  compute_dtype: str = "float32"
  optimizer: str = "adam"
  remat: bool | str = "none"
  vocab_chunk: int | None = None
  logits_chunk: int | None = None
  grad_accum_steps: int = 1
  reference_dtype: str = "float32"
  sample_batch_size: int | None = None
  sample_num_samples: int | None = None
  sample_len: int | None = None
  reference_copies: int = 0
  sampler_config: str = "sampling"

  def __post_init__(self):
    if isinstance(self.remat, bool):
      object.__setattr__(self, "remat", "full" if self.remat else "none")
    rules = [
        ("remat", self.remat in _REMAT_SAVED, f"must be one of {sorted(_REMAT_SAVED)}"),
        ("logits_chunk", self.logits_chunk is None or self.logits_chunk >= 1,
         "must be None or >= 1"),
        ("grad_accum_steps", self.grad_accum_steps >= 1, "must be >= 1"),
        ("reference_dtype", self.reference_dtype in DTYPE_BYTES,
         f"must be one of {sorted(DTYPE_BYTES)}"),
        ("batch_size", self.batch_size >= 1, "must be >= 1"),
        ("num_samples", self.num_samples >= 1, "must be >= 1"),
        ("prompt_len", self.prompt_len >= 1, "must be >= 1"),
        ("completion_len", self.completion_len >= 1, "must be >= 1"),
        ("compute_dtype", self.compute_dtype in DTYPE_BYTES,
         f"must be one of {sorted(DTYPE_BYTES)}"),
        ("optimizer", self.optimizer in OPTIMIZER_BUFFERS,
         f"must be one of {sorted(OPTIMIZER_BUFFERS)}"),
        ("vocab_chunk", self.vocab_chunk is None or self.vocab_chunk >= 1,
         "must be None or >= 1"),
    ]
    for name, ok, rule in rules:
      if not ok:
        raise ValueError(f"memory plan: {name}={getattr(self, name)!r}: {rule}")

  @property
  def sampler_rows(self) -> tuple[int, int, int]:
    """(prompts, samples per prompt, completion length) of one sampler call."""
    return (self.sample_batch_size or self.batch_size,
            self.sample_num_samples or self.num_samples, self.sample_len or self.completion_len)


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
  """Bytes per device of each part of a run (see the module docstring).

  Attributes:
    mesh_shape: {"data": .., "fsdp": .., "tensor": ..}.
    workload: what was planned.
    num_params: parameter count of the model.
    parameters, optimizer, gradients, reference, batch, activations, kv_cache, sampling:
      bytes per device.
    logits: the part of `activations` that is output logits (saved log-probabilities and
      their cotangent); not counted again in the peaks.
  """

  mesh_shape: dict[str, int]
  workload: Workload
  num_params: int
  trainable_params: int
  parameters: int
  optimizer: int
  gradients: int
  reference: int
  batch: int
  activations: int
  kv_cache: int
  sampling: int
  logits: int = 0

  @property
  def resident(self) -> int:
    """Bytes held throughout the run: parameters, optimizer state, reference copies."""
    return self.parameters + self.optimizer + self.reference

  @property
  def train_peak(self) -> int:
    return self.resident + self.gradients + self.batch + self.activations

  @property
  def sample_peak(self) -> int:
    return self.resident + self.kv_cache + self.sampling

  @property
  def peak(self) -> int:
    return max(self.train_peak, self.sample_peak)

  def components(self) -> dict[str, int]:
    """Component name -> bytes per device, in table order."""
    return {name: getattr(self, name) for name in _COMPONENT_NOTES}

  def table(self) -> str:
    """A small text table of the plan (MiB per device)."""
    mesh = " ".join(f"{a}={s}" for a, s in self.mesh_shape.items())
    lines = [f"memory per device, mesh {mesh} ({math.prod(self.mesh_shape.values())} devices), "
             f"{self.num_params / 1e6:.1f}M parameters",
             f"  {'component':<12} {'MiB':>10}  note"]
    for name, size in self.components().items():
      lines.append(f"  {name:<12} {size / _MIB:>10.1f}  {_COMPONENT_NOTES[name](self)}")
    lines.append(f"  {'train peak':<12} {self.train_peak / _MIB:>10.1f}  "
                 "parameters + optimizer + reference + gradients + batch + activations")
    lines.append(f"  {'sample peak':<12} {self.sample_peak / _MIB:>10.1f}  "
                 "parameters + optimizer + reference + kv cache + sampling")
    return "\n".join(lines)


def _note_activations(plan: MemoryPlan) -> str:
  w = plan.workload
  rows = _micro_rows(w, plan.mesh_shape)
  chunk = f", logits in chunks of {w.logits_chunk} tokens" if w.logits_chunk else ""
  return (f"{rows} rows x {w.prompt_len + w.completion_len} tokens per device and micro-batch "
          f"(x{w.grad_accum_steps}), remat {w.remat}{chunk}, {w.compute_dtype}")


def _note_kv(plan: MemoryPlan) -> str:
  prompts, n, length = plan.workload.sampler_rows
  return (f"{_per_device(prompts, _batch_shards(plan.mesh_shape))} prompts x "
          f"({plan.workload.prompt_len} + {n} x {length}) tokens per device")


_COMPONENT_NOTES: dict[str, Callable[[MemoryPlan], str]] = {
    "parameters": lambda p: "float32",
    "optimizer": lambda p: (f"{p.workload.optimizer}: {OPTIMIZER_BUFFERS[p.workload.optimizer]} "
                            "float32 buffers per parameter"),
    "gradients": lambda p: ("float32" + (", trainable (LoRA adapters) only"
                                         if p.trainable_params != p.num_params else "")
                            + (", + accumulator" if p.workload.grad_accum_steps > 1 else "")),
    "reference": lambda p: (f"{p.workload.reference_copies} frozen parameter copies "
                            f"({p.workload.reference_dtype})"),
    "batch": lambda p: "token ids and masks",
    "activations": _note_activations,
    "kv_cache": _note_kv,
    "sampling": lambda p: "prefill staging, one layer's activations, weight copy, logits",
}


def _micro_rows(w: "Workload", mesh_shape: Mapping[str, int]) -> int:
  """Training rows one device holds at a time (one micro-batch)."""
  rows = _per_device(w.batch_size * w.num_samples, _batch_shards(mesh_shape))
  return _per_device(rows, w.grad_accum_steps)


def _batch_shards(mesh_shape: Mapping[str, int]) -> int:
  return math.prod(mesh_shape[a] for a in DEFAULT_RULES["batch"])


def _per_device(size: int, shards: int) -> int:
  return -(-size // shards)


def _split(size: int, mesh_shape: Mapping[str, int], logical: str) -> int:
  """Per-device extent of a dimension named `logical` (unsplit when not divisible)."""
  shards = math.prod(mesh_shape[a] for a in DEFAULT_RULES[logical])
  return size // shards if size % shards == 0 else size


def _layer_residual_bytes(cfg: "ModelConfig", mesh_shape: Mapping[str, int], span: int) -> int:
  """Bytes one token keeps for the backward pass of one layer (float32 compute).

  The per-token residuals of a block: residual-stream-wide tensors (inputs and outputs of the
  norms and projections), per query head its grouped query, attention output, probabilities
  and logits over `span` keys and a mask byte, per key/value head its keys and values, the
  q/k-norm intermediates, the rotary tables, the MLP's gated tensors and the norms' statistics.
  """
  d, hd = cfg.d_model, cfg.head_dim
  h = _split(cfg.num_heads, mesh_shape, "q_heads")
  k = _split(cfg.num_kv_heads, mesh_shape, "kv_heads")
  f = _split(cfg.mlp_dim, mesh_shape, "mlp")
  post, qk = int(cfg.post_norms), int(cfg.qk_norm)
  floats = ((8 + 6 * post) * d + _MLP_SAVED[cfg.activation] * f
            + h * (2 * hd + 2 * span + 2) + k * 2 * hd + qk * (h + k) * (3 * hd + 2)
            + 2 * hd + 4 + 4 * post)
  return 4 * floats + h * span


def _head_bytes(cfg: "ModelConfig", mesh_shape: Mapping[str, int], vocab_chunk: int | None,
                span: int, remat: str, logits_chunk: int | None = None) -> int:
  """Bytes per token outside the layers: embedding lookup, final norm, log-probabilities."""
  vocab = _split(cfg.vocab_size, mesh_shape, "vocab")
  # Chunked: one chunk of logits, and the scan's three running statistics per chunk.
  logits = vocab if vocab_chunk is None else min(vocab_chunk, vocab) + 3 * math.ceil(
      vocab / vocab_chunk)
  if logits_chunk is not None:  # Sequence chunks are recomputed: only their inputs are kept.
    logits = 0
  # The float32 attention mask is the same for every layer, so autodiff keeps it once, outside
  # the layer scan (remat recomputes it instead).
  mask = 0 if remat != "none" else _split(cfg.num_heads, mesh_shape, "q_heads") * span
  return 4 * (4 * cfg.d_model + logits + mask + 1) + 8


def _gathered_layer_bytes(layout: ParamLayout, mesh_shape: Mapping[str, int]) -> int:
  """All layers' float32 weights as the compute sees them: all-gathered over fsdp."""
  no_fsdp = abstract_mesh(dict(mesh_shape, fsdp=1))
  return 4 * sum(shard_elements(shape, axes, no_fsdp) for name, (shape, axes) in layout.items()
                 if name.startswith("layers/"))


def saved_residual_bytes(cfg: "ModelConfig", mesh_shape: Mapping[str, int], rows: int,
                         span: int, *, remat: bool | str = "none",
                         vocab_chunk: int | None = None, logits_chunk: int | None = None) -> int:
  """Bytes the backward pass of `sequence_logprobs` keeps for `rows` sequences of `span` tokens.

  Float32 compute, per device (rows already split over the batch shards). With remat "full"
  only each layer's input is kept, with "dots" also its projections' outputs; the layer's other
  residuals are recomputed in the backward pass.
  """
  remat = ("full" if remat else "none") if isinstance(remat, bool) else remat
  saved = _REMAT_SAVED[remat]
  per_layer = (_layer_residual_bytes(cfg, mesh_shape, span) if saved is None else
               4 * saved(cfg, _split(cfg.num_heads, mesh_shape, "q_heads"),
                         _split(cfg.num_kv_heads, mesh_shape, "kv_heads"),
                         _split(cfg.mlp_dim, mesh_shape, "mlp")))
  head = _head_bytes(cfg, mesh_shape, vocab_chunk, span, remat, logits_chunk)
  return rows * span * (cfg.num_layers * per_layer + head)


def _training_activations(cfg: "ModelConfig", shape: Mapping[str, int], w: Workload,
                          layout: ParamLayout, param_elements: int) -> tuple[int, int]:
  """(activation bytes, of which output logits) of one training step on one device."""
  rows = _micro_rows(w, shape)
  span = w.prompt_len + w.completion_len
  tokens = rows * span
  vocab = _split(cfg.vocab_size, shape, "vocab")
  # Logits held at once: all tokens', one vocabulary chunk of them, or one sequence chunk's
  # (logits_chunk counts tokens of all devices together).
  logit_tokens = tokens if w.logits_chunk is None else min(
      tokens, _per_device(w.logits_chunk, _batch_shards(shape)))
  logits = 4 * logit_tokens * min(vocab, w.vocab_chunk or vocab)
  # The backward pass holds every saved residual, plus the cotangents of the layer it is in and
  # of the logits.
  activations = (saved_residual_bytes(cfg, shape, rows, span, remat=w.remat,
                                      vocab_chunk=w.vocab_chunk, logits_chunk=w.logits_chunk)
                 + tokens * _layer_residual_bytes(cfg, shape, span) + logits)
  if w.compute_dtype != "float32":  # The backward pass also keeps the cast weights.
    activations += DTYPE_BYTES[w.compute_dtype] * param_elements
  if shape["fsdp"] > 1:  # Weights gathered for the forward and the backward of a layer.
    activations += 2 * (_gathered_layer_bytes(layout, shape) // cfg.num_layers)
  return activations, 2 * logits


def _sampler_memory(cfg: "ModelConfig", shape: Mapping[str, int], w: Workload,
                    layout: ParamLayout, layer_elements: int,
                    param_elements: int) -> tuple[int, int]:
  """(KV-cache bytes, other working-set bytes) of one sampler call on one device."""
  compute_bytes = DTYPE_BYTES[w.compute_dtype]
  prompts, n, length = w.sampler_rows
  rows = _per_device(prompts, _batch_shards(shape))
  kv_heads = _split(cfg.num_kv_heads, shape, "kv_heads")
  kv_token = 2 * cfg.num_layers * kv_heads * cfg.head_dim * compute_bytes
  prompt_cache = rows * w.prompt_len * kv_token
  kv_cache = prompt_cache + rows * n * length * kv_token
  prefill_layer = 4 * (cfg.d_model + _split(cfg.mlp_dim, shape, "mlp")
                       + _split(cfg.num_heads, shape, "q_heads") * w.prompt_len)
  # The sampler decodes from a copy of the layer weights, cast and split into per-layer
  # buffers (`kv_cache.decoding_params`) and gathered over fsdp once per call (the copy is
  # loop-invariant); other weights are only cast.
  weights = compute_bytes * _gathered_layer_bytes(layout, shape) // 4
  if w.compute_dtype != "float32":
    weights += compute_bytes * (param_elements - layer_elements)
  working = (prompt_cache  # The prefill's keys/values before their transposition.
             + rows * w.prompt_len * prefill_layer
             + weights
             + 4 * rows * n * _split(cfg.vocab_size, shape, "vocab"))
  return kv_cache, working


def adapter_elements(cfg: "ModelConfig") -> int:
  """Elements of the LoRA adapters cfg declares (0 without LoRA), `bonjax.models.lora`'s
  layout: per target weight [L, *in, r] and [L, r, *out]."""
  if not getattr(cfg, "lora_rank", 0):
    return 0
  d, f = cfg.d_model, cfg.mlp_dim
  q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
  in_out = {"q": (d, q), "k": (d, kv), "v": (d, kv), "o": (q, d), "gate": (d, f), "up": (d, f),
            "down": (f, d)}
  return cfg.num_layers * cfg.lora_rank * sum(sum(in_out[t]) for t in cfg.lora_targets)


def plan_memory(cfg: "ModelConfig", mesh_shape: Sequence[int] | Mapping[str, int],
                workload: Workload) -> MemoryPlan:
  """Plans the memory of one device of the mesh.

  Args:
    cfg: model architecture (a `bonjax.models.config.ModelConfig`).
    mesh_shape: (data, fsdp, tensor) sizes, or a dict of them.
    workload: batch, N, lengths, dtype, optimizer and memory-saving options.

  Returns:
    The MemoryPlan (bytes per device of each component).
  """
  mesh = abstract_mesh(mesh_shape)
  shape = dict(mesh.shape)
  w = workload
  layout = parameter_layout(cfg)
  param_elements = sum(shard_elements(s, a, mesh) for s, a in layout.values())
  layer_elements = sum(shard_elements(s, a, mesh) for n, (s, a) in layout.items()
                       if n.startswith("layers/"))
  adapters = adapter_elements(cfg)  # Replicated: small, and so planned conservatively.
  params = 4 * (param_elements + adapters)
  trained = 4 * adapters if adapters else params
  activations, logits = _training_activations(cfg, shape, w, layout, param_elements)
  kv_cache, sampling = _sampler_memory(cfg, shape, w, layout, layer_elements, param_elements)
  rows = _per_device(w.batch_size * w.num_samples, _batch_shards(shape))
  num_params = sum(math.prod(s) for s, _ in layout.values())
  return MemoryPlan(
      mesh_shape=shape, workload=w, num_params=num_params + adapters,
      trainable_params=adapters or num_params, parameters=params,
      optimizer=OPTIMIZER_BUFFERS[w.optimizer] * trained,
      gradients=trained * (2 if w.grad_accum_steps > 1 else 1),
      reference=w.reference_copies * DTYPE_BYTES[w.reference_dtype] * param_elements,
      batch=rows * (w.prompt_len + w.completion_len) * (4 + 1 + 1),
      activations=activations, kv_cache=kv_cache, sampling=sampling, logits=logits)


# ----------------------------------------------------------------------------------------------
# Fitting a device.
# ----------------------------------------------------------------------------------------------


class MemoryPlanError(ValueError):
  """A run does not fit in device memory; the message names the knobs that would make it fit."""


def _advise_activations(plan: MemoryPlan) -> str:
  w = plan.workload
  tips = [f"lower train.batch_size={w.batch_size} or raise train.grad_accum_steps="
          f"{w.grad_accum_steps} (micro-batches per step)"]
  if w.remat != "full":
    better = "dots" if w.remat == "none" else "full"
    tips.append(f"recompute layer activations: model.remat={better} (now {w.remat!r})")
  if w.logits_chunk is None and w.vocab_chunk is None and 3 * plan.logits > plan.activations:
    tips.append("compute the output layer in sequence chunks (model.logits_chunk=1024)")
  tips.append(f"or spread prompts over more devices (mesh.data x mesh.fsdp = "
              f"{_batch_shards(plan.mesh_shape)})")
  return ", ".join(tips)


def _advise_state(plan: MemoryPlan) -> str:
  fsdp = plan.mesh_shape["fsdp"]
  lora = ("" if plan.trainable_params != plan.num_params else
          "; or train LoRA adapters only (model.lora_rank=16): no optimizer state or gradients "
          "for the base weights, which are also the reference policy")
  return (f"raise mesh.fsdp (now {fsdp}) to split parameters, optimizer state and gradients "
          f"over more devices (mesh.tensor={plan.mesh_shape['tensor']} splits heads and MLP)"
          + lora)


def _advise_sampler(plan: MemoryPlan) -> str:
  prompts, n, length = plan.workload.sampler_rows
  section = plan.workload.sampler_config
  batch_field = "eval.prompt_batch_size" if section == "eval" else "train.batch_size"
  return (f"lower {section}.num_samples={n}, {batch_field}={prompts} (prompts per sampler "
          f"call) or {section}.max_new_tokens={length}")


def _advise_batch(plan: MemoryPlan) -> str:
  return f"lower train.batch_size={plan.workload.batch_size}"


_ADVICE: dict[str, Callable[[MemoryPlan], str]] = {
    "parameters": _advise_state,
    "optimizer": _advise_state,
    "gradients": _advise_state,
    "reference": _advise_state,
    "batch": _advise_batch,
    "activations": _advise_activations,
    "kv_cache": _advise_sampler,
    "sampling": _advise_sampler,
}

_PHASES: dict[str, tuple[str, ...]] = {
    "training": ("parameters", "optimizer", "reference", "gradients", "batch", "activations"),
    "sampling": ("parameters", "optimizer", "reference", "kv_cache", "sampling"),
}


def format_bytes(size: float) -> str:
  """1536 -> '1.5 KiB', in binary units."""
  for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
    if abs(size) < 1024 or unit == "TiB":
      return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
    size /= 1024
  raise AssertionError("unreachable")


def check_fits(plan: MemoryPlan, device_memory_bytes: int, usable_fraction: float = 0.9) -> int:
  """Raises MemoryPlanError when a phase of the run needs more than the device can give.

  Args:
    plan: from `plan_memory`.
    device_memory_bytes: memory of one device (e.g. `device.memory_stats()["bytes_limit"]`).
    usable_fraction: share of it the run may plan for (XLA and the runtime keep the rest).

  Returns:
    The planned peak in bytes, when it fits.

  Raises:
    MemoryPlanError: naming the phase, its largest parts and the knobs that shrink them.
  """
  budget = int(device_memory_bytes * usable_fraction)
  peaks = {"training": plan.train_peak, "sampling": plan.sample_peak}
  over = [phase for phase, peak in peaks.items() if peak > budget]
  if not over:
    return plan.peak
  parts = plan.components()
  lines = []
  for phase in over:
    ranked = sorted(_PHASES[phase], key=lambda name: -parts[name])
    largest = ", ".join(f"{name} {format_bytes(parts[name])}" for name in ranked[:3])
    lines.append(f"{phase} needs {format_bytes(peaks[phase])} per device, more than "
                 f"{format_bytes(budget)} ({usable_fraction:.0%} of "
                 f"{format_bytes(device_memory_bytes)}); largest parts: {largest}")
    advice = []
    for name in ranked[:2]:
      tip = _ADVICE[name](plan)
      if tip not in advice:
        advice.append(tip)
    lines.extend(f"  to fit: {tip}" for tip in advice)
  raise MemoryPlanError("the run does not fit in device memory:\n" + "\n".join(lines)
                        + "\n" + plan.table())


def plan_for_config(config: Any, cfg: "ModelConfig",
                    mesh_shape: Sequence[int] | Mapping[str, int], *,
                    on_policy: bool) -> MemoryPlan:
  """The plan of a run config (an ml_collections ConfigDict of experiments/*.py).

  `on_policy` says whether `config.algorithm` trains on the policy's samples (the objective
  registry's answer, `bonjax.objectives.registry.trains_on_samples`, which parallel/ does not
  import).

  The memory knobs come from `cfg` (model.remat, model.logits_chunk, LoRA, as
  `bonjax.training.memory_budget.model_config` sets them) and train.grad_accum_steps.

  Training rows are prompts x `sampling.num_samples` for on-policy algorithms and prompts for
  supervised ones; the sampler is planned for the larger of the training sampler (`sampling.*`, one call
  per step over `train.batch_size` prompts) and the evaluation sampler (`eval.*`).
  """
  train, sampling, evaluation = config.train, config.sampling, config.eval
  prompt_len = max(config.lengths.prompt_buckets)
  completion_len = sampling.max_new_tokens if on_policy else max(config.lengths.completion_buckets)
  calls = [("eval", evaluation.prompt_batch_size, evaluation.num_samples,
            evaluation.max_new_tokens)]
  if on_policy:
    calls.append(("sampling", train.batch_size, sampling.num_samples, sampling.max_new_tokens))
  section, prompts, n, length = max(calls, key=lambda c: c[1] * (prompt_len + c[2] * c[3]))
  # A LoRA run's reference policy is its own base weights (adapters off): no copy.
  needs_reference = (on_policy or bool(config.get("init_from"))) and not getattr(
      cfg, "lora_rank", 0)
  workload = Workload(
      batch_size=train.batch_size, num_samples=sampling.num_samples if on_policy else 1,
      prompt_len=prompt_len, completion_len=completion_len,
      compute_dtype=config.model.compute_dtype, optimizer="adam",
      remat=getattr(cfg, "remat", "none"), logits_chunk=getattr(cfg, "logits_chunk", None),
      grad_accum_steps=int(train.get("grad_accum_steps", 1)),
      sample_batch_size=prompts, sample_num_samples=n, sample_len=length,
      reference_copies=int(needs_reference), reference_dtype=config.model.compute_dtype,
      sampler_config=section)
  return plan_memory(cfg, mesh_shape, workload)


def device_memory_bytes(device: Any = None) -> int | None:
  """Memory of one accelerator (its allocator's limit), or None where jax does not report it
  (CPU devices)."""
  device = jax.local_devices()[0] if device is None else device
  stats = device.memory_stats()
  return int(stats["bytes_limit"]) if stats and "bytes_limit" in stats else None


def check_config_fits(config: Any, cfg: "ModelConfig",
                      mesh_shape: Sequence[int] | Mapping[str, int], *, on_policy: bool,
                      memory_bytes: int | None = None) -> MemoryPlan:
  """Plans a run config and checks it against the device (a start-up check).

  Args:
    config: run config.
    cfg: model architecture.
    mesh_shape: the run's mesh shape.
    on_policy: the algorithm trains on the policy's samples (see `plan_for_config`).
    memory_bytes: device memory; None asks the first local device, and skips the check where
      the device does not report its memory.

  Returns:
    The plan (log `plan.table()`).

  Raises:
    MemoryPlanError: the run does not fit, naming the knobs to turn.
  """
  plan = plan_for_config(config, cfg, mesh_shape, on_policy=on_policy)
  memory_bytes = device_memory_bytes() if memory_bytes is None else memory_bytes
  if memory_bytes is not None:
    check_fits(plan, memory_bytes)
  return plan
