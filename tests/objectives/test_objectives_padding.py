"""N is the number of real samples: a group padded with masked slots gives exactly the loss and
gradient of the unpadded group, for every registry objective with its default config (bon_n=None
and the default lambda_N read the valid count, not the padded width)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.objectives import REGISTRY, ObjectiveInputs, get_objective

VALID, WIDTH = 5, 8


def _inputs(width):
  rng = np.random.default_rng(1)
  logprobs = np.log(rng.uniform(0.05, 0.9, size=(2, VALID)))
  fields = {
      "rewards": np.array([[1.0, 0, 0, 1.0, 0], [0, 1.0, 0, 0, 0]]),
      "scores": rng.uniform(size=(2, VALID)),
      "ref_logprobs": np.log(rng.uniform(0.05, 0.9, size=(2, VALID))),
      "anchor_logprobs": np.log(rng.uniform(0.05, 0.9, size=(2, VALID))),
      "num_tokens": rng.integers(1, 6, size=(2, VALID)).astype(np.float64),
  }
  pad = width - VALID
  # Padding holds garbage that must not matter.
  logprobs = np.pad(logprobs, ((0, 0), (0, pad)), constant_values=-np.inf)
  fields = {k: np.pad(v, ((0, 0), (0, pad)), constant_values=np.nan if k == "rewards" else 7.0)
            for k, v in fields.items()}
  mask = np.arange(width)[None, :] < VALID
  return jnp.asarray(logprobs, jnp.float32), dict(
      **{k: jnp.asarray(v, jnp.float32) for k, v in fields.items()},
      mask=jnp.asarray(np.repeat(mask, 2, axis=0)),
      ref_scores=jnp.asarray(rng.uniform(size=(2, 6)), jnp.float32),
      expert_scores=jnp.asarray([0.4, 0.8], jnp.float32),
      expert_logprobs=jnp.log(jnp.asarray([0.3, 0.2], jnp.float32)))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_padded_group_equals_unpadded(name):
  spec = get_objective(name)
  cfg = spec.make_config()
  results = []
  for width in (VALID, WIDTH):
    logprobs, fields = _inputs(width)
    expert = fields.pop("expert_logprobs")

    def loss(logp, expert_logp):
      inputs = ObjectiveInputs.create(logp, fields["rewards"], scores=fields["scores"],
                                      mask=fields["mask"], num_tokens=fields["num_tokens"],
                                      expert_logprobs=expert_logp,
                                      **{k: fields[k] for k in ("ref_logprobs", "ref_scores",
                                                                "anchor_logprobs",
                                                                "expert_scores")})
      return spec.fn(inputs, cfg)[0]
    value, (g, g_expert) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(logprobs, expert)
    results.append((float(value), np.asarray(g)[:, :VALID], np.asarray(g_expert)))
  (v0, g0, e0), (v1, g1, e1) = results
  np.testing.assert_allclose(v1, v0, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(g1, g0, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(e1, e0, rtol=1e-6, atol=1e-7)


def test_default_n_is_the_valid_count():
  """bon_rlb with bon_n=None on 5 valid of 8 slots equals bon_n=5, not bon_n=8."""
  logprobs, fields = _inputs(WIDTH)
  inputs = ObjectiveInputs.create(logprobs, fields["rewards"], scores=fields["scores"],
                                  mask=fields["mask"])
  spec = get_objective("bon_rlb")
  grad = lambda cfg: np.asarray(jax.grad(lambda l: spec.fn(inputs.replace(logprobs=l), cfg)[0])(
      inputs.logprobs))
  np.testing.assert_allclose(grad(spec.make_config()), grad(spec.make_config(bon_n=5)))
  assert np.abs(grad(spec.make_config()) - grad(spec.make_config(bon_n=8))).max() > 1e-3
  bon_sft = get_objective("bon_sft").make_config()
  np.testing.assert_allclose(bon_sft.lambda_per_group(fields["mask"]),
                             [bon_sft.resolved_lambda(5)] * 2, rtol=1e-6)
