"""Pure train step: loss -> gradients -> optimizer update, jit-compiled with shardings."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from bonjax.training.state import TrainState, step_key, trainable_part, with_trainable

# loss_fn(params, batch, rng) -> (scalar loss, dict of scalar metrics)
LossFn = Callable[[Any, Any, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


def global_norm(tree: Any) -> jax.Array:
  """Euclidean norm of all leaves of `tree` together (float32)."""
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def micro_batches(batch: Any, steps: int) -> Any:
  """[B, ...] arrays -> [steps, B / steps, ...]: micro-batch i holds rows i, i + steps, ....

  Strided rows keep every micro-batch split over the devices the way B is (a contiguous split
  would hand whole micro-batches to a subset of the data shards).
  """

  def split(x):
    if x.shape[0] % steps:
      raise ValueError(f"train.grad_accum_steps={steps}: must divide the batch's leading axis "
                       f"({x.shape[0]})")
    return jnp.swapaxes(x.reshape(x.shape[0] // steps, steps, *x.shape[1:]), 0, 1)

  return jax.tree.map(split, batch)


def accumulated_value_and_grad(loss_fn: LossFn, steps: int) -> Callable:
  """(params, batch, rng) -> ((loss, metrics), grads), averaged over `steps` micro-batches.

  Activations are held for one micro-batch at a time; the result equals one pass over the
  whole batch for a loss that is a mean over rows (metrics are averaged the same way).
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  if steps == 1:
    return grad_fn

  def value_and_grad(params, batch, rng):
    def body(total, xs):
      index, micro = xs
      value, grads = grad_fn(params, micro, jax.random.fold_in(rng, index))
      return jax.tree.map(jnp.add, total, (value, grads)), None

    micro = micro_batches(batch, steps)
    first = jax.tree.map(lambda x: x[0], micro)
    zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(grad_fn, params, first, rng))
    total, _ = jax.lax.scan(body, zeros, (jnp.arange(steps), micro))
    return jax.tree.map(lambda x: x / steps, total)

  return value_and_grad


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule | None = None,
                    aux_update: Callable[[Any, Any], Any] | None = None,
                    trainable: Any = None, grad_accum_steps: int = 1) -> Callable:
  """Builds `train_step(state, batch) -> (state, metrics)`, a pure function.

  A step whose loss, gradient norm or updated parameters are not finite is not applied:
  parameters, optimizer state and aux stay as they were, and the `nonfinite` metric is 1.

  Args:
    loss_fn: differentiable loss of the parameters (see LossFn).
    optimizer: the optax transformation whose state lives in `state.opt_state`.
    schedule: learning-rate schedule, reported as the `learning_rate` metric when given.
    aux_update: `(aux, new_params) -> aux` applied after the update (e.g. an EMA anchor).
    trainable: bool mask shaped like the params (as given to `create_train_state`), or None:
      gradients, optimizer and update cover only the True leaves (LoRA adapters); the others
      are constants of the step.
    grad_accum_steps: micro-batches per step (`accumulated_value_and_grad`); must divide the
      batch's leading axis.

  Returns:
    The step function (not yet jit-compiled).
  """
  if grad_accum_steps < 1:
    raise ValueError(f"train.grad_accum_steps={grad_accum_steps}: must be >= 1")

  def trained_loss(trained, params, batch, rng):
    return loss_fn(with_trainable(params, trained, trainable), batch, rng)

  def train_step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, jax.Array]]:
    grad_fn = accumulated_value_and_grad(
        lambda trained, b, r: trained_loss(trained, state.params, b, r), grad_accum_steps)
    trained = trainable_part(state.params, trainable)
    (loss, metrics), grads = grad_fn(trained, batch, step_key(state))
    updates, opt_state = optimizer.update(grads, state.opt_state, trained)
    params = with_trainable(state.params, optax.apply_updates(trained, updates), trainable)
    grad_norm, param_norm = global_norm(grads), global_norm(params)
    aux = state.aux if aux_update is None else aux_update(state.aux, params)
    # A non-finite loss, gradient or result leaves the state as it was (only the step counter,
    # hence the data position, moves on); the flag is read by the loop at its next log or
    # checkpoint, so checking costs no host round trip per step.
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(param_norm)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    metrics = dict(metrics, loss=loss, grad_norm=grad_norm, param_norm=param_norm,
                   nonfinite=1.0 - finite.astype(jnp.float32))
    if schedule is not None:
      metrics["learning_rate"] = schedule(state.step)
    return state.replace(step=state.step + 1, params=keep(params, state.params),
                         opt_state=keep(opt_state, state.opt_state),
                         aux=keep(aux, state.aux)), metrics

  return train_step


def jit_train_step(train_step: Callable, state_shardings: Any, batch_shardings: Any,
                   mesh: Mesh) -> Callable:
  """Compiles `train_step` for `mesh`: state sharded as given and donated, metrics replicated."""
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return jax.jit(train_step, in_shardings=(state_shardings, batch_shardings),
                 out_shardings=(state_shardings, replicated), donate_argnums=(0,))
