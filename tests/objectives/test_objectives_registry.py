"""The registry, config validation, and properties every objective must have: jit-able in float32,
finite on degenerate groups and padding, permutation invariant, shift invariant where promised."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.objectives import REGISTRY, ObjectiveInputs, get_objective

NAMES = ["sft", "sft_best_of_n", "rft", "rl", "bon_sft", "bon_rl", "bon_rlb", "bon_rlb_p", "vbon",
         "bond", "j_bond", "pkpo", "loo_passk"]


def test_registry_names_and_unknown_name():
  assert sorted(REGISTRY) == sorted(NAMES)
  with pytest.raises(KeyError) as err:
    get_objective("bon_sfft")
  for name in NAMES:
    assert name in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_default_config_validates_and_is_hashable(name):
  spec = get_objective(name)
  cfg = spec.make_config()
  cfg.validate()
  hash(cfg)  # usable as a static jit argument
  assert spec.required_inputs() == cfg.required_inputs()
  with pytest.raises(TypeError, match=name):
    spec.make_config(not_a_field=1)


@pytest.mark.parametrize("name,field,value,rule", [
    ("rl", "signal", "oracle", "must be one of"),
    ("rl", "kl_coef", -1.0, ">= 0"),
    ("bon_rlb", "estimator", "plus", "must be one of"),
    ("pkpo", "k", 0, ">= 1"),
    ("vbon", "bon_n", 1, ">= 2"),
    ("bond", "beta", 1.5, "<= 1"),
    ("bon_sft", "omega", "argmax", "must be one of"),
    ("rl", "ppo_clip", 0.0, "> 0"),
])
def test_invalid_config_names_field_value_and_rule(name, field, value, rule):
  with pytest.raises(ValueError) as err:
    get_objective(name).make_config(**{field: value})
  message = str(err.value)
  assert field in message and repr(value) in message and rule in message


def test_spec_flags():
  assert get_objective("vbon").needs_reference and get_objective("vbon").needs_ref_scores
  assert get_objective("bon_sft").needs_expert and not get_objective("bon_sft").needs_reference
  assert get_objective("j_bond").needs_anchor and not get_objective("j_bond").needs_reference
  assert not any([get_objective("pkpo").needs_reference, get_objective("pkpo").needs_expert])
  assert get_objective("rl").required_inputs(get_objective("rl").make_config(kl_coef=0.1)) == {
      "ref_logprobs"}


def test_missing_input_is_reported_by_name():
  spec = get_objective("vbon")
  inputs = ObjectiveInputs.create(jnp.zeros((2, 3)), jnp.zeros((2, 3)),
                                  ref_logprobs=jnp.zeros((2, 3)))
  with pytest.raises(ValueError, match="inputs.ref_scores is None"):
    spec.fn(inputs, spec.make_config())
  with pytest.raises(ValueError, match="k=5"):
    get_objective("pkpo").fn(inputs, get_objective("pkpo").make_config(k=5))
  with pytest.raises(ValueError, match="ref_logprobs has shape"):
    get_objective("rl").fn(inputs.replace(ref_logprobs=jnp.zeros((2, 4))),
                           get_objective("rl").make_config(kl_coef=0.1))


# ----------------------------------------------------------------------------- generic batch
#
# One prompt block has 5 rows: one correct sample, all correct, all wrong, a single valid
# sample, and a padding row (garbage values). Each objective runs once on three stacked copies
# of the block: as is, with the samples of every row permuted, and with rewards shifted /
# scores mapped by an increasing function. Objectives are row-separable, so comparing the
# gradient blocks checks permutation equivariance and invariance in one compilation.

PERM = np.array([2, 0, 3, 1])
REWARDS = np.array([[1.0, 0.0, 0.0, 0.0], [1.0] * 4, [0.0] * 4, [1.0, 0, 0, 0], [0.0] * 4])
MASK = np.array([[True] * 4, [True] * 4, [True] * 4, [True, False, False, False], [False] * 4])
SCORES = np.array([[0.9, 0.2, 0.4, 0.7], [0.3, 0.8, 0.1, 0.5], [0.6, 0.2, 0.9, 0.4],
                   [0.5, 0.0, 0.0, 0.0], [0.0] * 4])
# Third block: how the objective promises to be invariant.
REWARD_SHIFT = {"rl": 2.5, "bon_rl": 2.5, "pkpo": 2.5, "loo_passk": 2.5}
SCORE_MAP = {"vbon": np.exp, "bond": np.exp, "j_bond": lambda s: 3.0 * s - 1.0,
             "sft_best_of_n": np.exp, "bon_rl": np.exp}
DEGENERATE_ZERO = ("rl", "bon_rl", "bon_rlb", "bon_rlb_p", "pkpo", "loo_passk")
# With bon_n=None, N is the group's valid count: a single correct sample targets pass@1, whose
# unbiased gradient estimate R grad log pi is not zero.
SINGLE_SAMPLE_SIGNAL = ("bon_rlb", "bon_rlb_p")


def _block(perm=None, reward_shift=0.0, score_map=None):
  rng = np.random.default_rng(0)
  per_sample = {
      "logprobs": np.log(rng.uniform(0.05, 0.9, size=(5, 4))),
      "ref_logprobs": np.log(rng.uniform(0.05, 0.9, size=(5, 4))),
      "anchor_logprobs": np.log(rng.uniform(0.05, 0.9, size=(5, 4))),
      "num_tokens": rng.integers(1, 9, size=(5, 4)).astype(np.float64),
      "rewards": REWARDS + reward_shift, "scores": SCORES.copy(), "mask": MASK.copy(),
  }
  per_sample["logprobs"][4] = -np.inf  # padding rows may hold anything
  per_sample["rewards"][4] = np.nan
  per_sample["sampler_logprobs"] = np.where(MASK, per_sample["logprobs"] - 0.05, 0.0)
  if perm is not None:
    per_sample = {k: v[:, perm] for k, v in per_sample.items()}
  ref_scores = rng.uniform(-1, 2, size=(5, 6))
  if score_map is not None:
    per_sample["scores"] = score_map(per_sample["scores"])
    ref_scores = score_map(ref_scores)
  per_row = {
      "ref_scores": ref_scores,
      "ref_mask": np.arange(6)[None, :] < np.array([6, 5, 6, 4, 0])[:, None],
      "expert_logprobs": np.log([0.3, 0.2, 0.4, 0.1, 0.5]),
      "expert_scores": np.array([0.5, 0.6, 0.7, 0.4, 0.0]),
  }
  return {**per_sample, **per_row}


def _stacked_batch(name):
  blocks = [_block(), _block(perm=PERM),
            _block(reward_shift=REWARD_SHIFT.get(name, 0.0), score_map=SCORE_MAP.get(name))]
  batch = {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}
  return {k: jnp.asarray(v, bool if v.dtype == bool else jnp.float32) for k, v in batch.items()}


def _run(name, cfg, batch):
  spec = get_objective(name)

  def loss_fn(logp, expert):
    inputs = ObjectiveInputs(**{**batch, "logprobs": logp, "expert_logprobs": expert})
    return spec.fn(inputs, cfg)
  (loss, metrics), grads = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True))(
      batch["logprobs"], batch["expert_logprobs"])
  return loss, metrics, grads


def _check_finite_and_padding(loss, metrics, g_logp, g_expert, cfg):
  assert loss.dtype == jnp.float32 and np.isfinite(float(loss)), cfg
  assert np.all(np.isfinite(g_logp)) and np.all(np.isfinite(g_expert)), cfg
  for block in range(3):
    rows = slice(5 * block, 5 * block + 5)
    np.testing.assert_array_equal(g_logp[rows][4], 0.0)  # padding row
    assert float(g_expert[rows][4]) == 0.0
    single = g_logp[rows][3]
    assert np.count_nonzero(single) <= 1  # masked slots of the single-sample row
  for key in ("loss", "frac_zero_signal_groups", "mean_abs_weight", "weight_std"):
    assert np.isfinite(float(metrics[key])), (key, cfg)
  assert 0.0 <= float(metrics["frac_zero_signal_groups"]) <= 1.0
  assert float(jnp.abs(g_logp).sum() + jnp.abs(g_expert).sum()) > 0, cfg


@pytest.mark.parametrize("name", NAMES)
def test_generic_properties(name):
  """float32 under jit; finite loss and gradients with -inf / NaN in padding; no gradient into
  padding; permuting samples permutes the gradient (verifier scores are distinct, so index
  tie-breaking plays no role); invariance to a reward shift (LOO / PKPO advantages) or to an
  increasing map of all scores (quantile-based and argmax-based objectives); degenerate groups
  (all correct, all wrong, a single sample) carry exactly zero signal where the estimator says
  so."""
  cfg = get_objective(name).make_config()
  loss, metrics, (g_logp, g_expert) = _run(name, cfg, _stacked_batch(name))
  _check_finite_and_padding(loss, metrics, g_logp, g_expert, cfg)
  base, permuted, transformed = g_logp[:5], g_logp[5:10], g_logp[10:]
  np.testing.assert_allclose(permuted, base[:, PERM], rtol=1e-5, atol=1e-8)
  np.testing.assert_allclose(g_expert[5:10], g_expert[:5], rtol=1e-5, atol=1e-8)
  if name in REWARD_SHIFT or name in SCORE_MAP:
    np.testing.assert_allclose(transformed, base, rtol=1e-5, atol=1e-7)
  if name in DEGENERATE_ZERO and name in SINGLE_SAMPLE_SIGNAL:
    np.testing.assert_array_equal(base[1:3], 0.0)
    np.testing.assert_allclose(base[3], [-1 / 12, 0, 0, 0], rtol=1e-6)  # 12 valid rows
    np.testing.assert_allclose(metrics["frac_zero_signal_groups"], 0.5)
  elif name in DEGENERATE_ZERO:
    np.testing.assert_array_equal(base[1:], 0.0)
    assert float(jnp.abs(base[0]).sum()) > 0
    np.testing.assert_allclose(metrics["frac_zero_signal_groups"], 0.75)


@pytest.mark.parametrize("name", [n for n in NAMES
                                  if "ppo_clip" in {f.name for f in dataclasses.fields(
                                      get_objective(n).config_class)}])
def test_generic_properties_with_kl_ppo_and_length_normalisation(name):
  cfg = get_objective(name).make_config()
  fields = {f.name for f in dataclasses.fields(cfg)}
  options = {"ppo_clip": 0.2, "length_normalize": True}
  if "kl_coef" in fields:
    options.update(kl_coef=0.1, kl_estimator="k3")
  cfg = dataclasses.replace(cfg, **options)
  loss, metrics, (g_logp, g_expert) = _run(name, cfg, _stacked_batch(name))
  _check_finite_and_padding(loss, metrics, g_logp, g_expert, cfg)
  np.testing.assert_allclose(g_logp[5:10], g_logp[:5][:, PERM], rtol=1e-5, atol=1e-8)
  assert "ppo_clip_frac" in metrics


def test_weight_metrics_exact_over_valid_samples():
  """Padding never enters the weight statistics: rows [1, -1, 3 | pad] and [0, 0 | pad, pad]."""
  from bonjax.objectives import loss_terms
  weights = jnp.array([[1.0, -1.0, 3.0, 99.0], [0.0, 0.0, 7.0, 7.0]])
  mask = jnp.array([[True, True, True, False], [True, True, False, False]])
  m = loss_terms.weight_metrics(weights, mask)
  valid = np.array([1.0, -1.0, 3.0, 0.0, 0.0])
  np.testing.assert_allclose(float(m["mean_abs_weight"]), np.abs(valid).mean(), rtol=1e-6)
  np.testing.assert_allclose(float(m["weight_std"]), valid.std(), rtol=1e-6)
  assert float(m["frac_zero_signal_groups"]) == 0.5
