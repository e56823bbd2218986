"""Train state (a pytree) and the optimizer built from the config."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax


@flax.struct.dataclass
class TrainState:
  """Everything a training step reads and writes; saved whole in checkpoints.

  Attributes:
    step: number of optimizer updates applied.
    params: model parameters.
    opt_state: optimizer state.
    rng: base PRNG key data (uint32); the key of step s is fold_in(rng, s), so a resumed run
      draws the same randomness as an uninterrupted one.
    aux: extra trained-alongside state some algorithms keep (J-BOND's EMA anchor), or None.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  aux: Any = None


def learning_rate_schedule(train: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warm-up to `train.learning_rate`, then the configured decay."""
  peak = train.learning_rate
  end = peak * train.end_lr_fraction
  decay_steps = max(train.num_steps - train.warmup_steps, 1)
  decays = {
      "cosine": lambda: optax.cosine_decay_schedule(peak, decay_steps, alpha=train.end_lr_fraction),
      "linear": lambda: optax.linear_schedule(peak, end, decay_steps),
      "constant": lambda: optax.constant_schedule(peak),
  }
  warmup = optax.linear_schedule(0.0, peak, max(train.warmup_steps, 1))
  return optax.join_schedules([warmup, decays[train.lr_schedule]()], [train.warmup_steps])


def make_optimizer(train: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """AdamW with optional global-norm clipping, from the `train` config section."""
  parts = []
  if train.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(train.grad_clip_norm))
  parts.append(optax.adamw(learning_rate_schedule(train), b1=train.b1, b2=train.b2,
                           weight_decay=train.weight_decay))
  return optax.chain(*parts)


def trainable_part(params: Any, trainable: Any = None) -> Any:
  """The leaves of `params` that are trained: all when `trainable` is None, else the leaves
  where the bool mask `trainable` (shaped like params) is True, with None elsewhere."""
  if trainable is None:
    return params
  # The mask leads: its leaves may stand for whole subtrees of params (e.g. partitioning boxes).
  return jax.tree.map(lambda m, p: p if m else None, trainable, params)


def with_trainable(params: Any, trained: Any, trainable: Any = None) -> Any:
  """`params` with its trainable leaves replaced by those of `trained` (from `trainable_part`)."""
  if trainable is None:
    return trained
  return jax.tree.map(lambda m, t, p: t if m else p, trainable, trained, params)


def create_train_state(params: Any, optimizer: optax.GradientTransformation,
                       seed: int, aux: Any = None, trainable: Any = None) -> TrainState:
  """Fresh state at step 0.

  Args:
    params: all model parameters.
    optimizer: the optax transformation.
    seed: base PRNG seed.
    aux: see TrainState.
    trainable: bool mask shaped like params (e.g. `bonjax.models.lora.trainable_mask`), or None
      to train everything; the optimizer keeps state for trainable leaves only.
  """
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=optimizer.init(trainable_part(params, trainable)),
                    rng=jax.random.key_data(jax.random.key(seed)), aux=aux)


def step_key(state: TrainState) -> jax.Array:
  """The PRNG key of the current step."""
  return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
