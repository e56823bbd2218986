"""Every registry objective climbs its stated target: exact expected updates by enumeration.

For a categorical single-step policy pi = softmax(theta) over K outcomes (K = 2 or 3) and
every group size N' in {2, 4, 8}, ALL K^N' ordered groups are enumerated with their
probabilities. The real registry objective is differentiated with respect to the group's
log-probs (and the expert's), which gives each sample's weight w_j = -d loss / d log pi(y_j)
for every group in one vmapped, jitted call (one compilation per N'); the exact expected update
is then sum_t P(t) sum_j w_tj grad log pi(y_tj), with grad_theta log pi(y) = e_y - pi (float64,
numpy). The target gradient comes from the closed forms of tests/objectives/objectives_oracle.py.

Checks per row (an objective configuration with a stated target): <E[update], grad target> > 0
at every policy, N' and N <= N' of the grid; where the estimator claims to be unbiased, the
whole vector E[update] equals grad target (so the ratio is 1) to 1e-6 relative. Rows known NOT
to ascend (bon_rlb estimator="plugin_plus") assert that they do descend somewhere, so that the
documentation stays true. A registry objective without a row fails `test_registry_complete`
unless it is listed in NO_TARGET with the reason.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.objectives import REGISTRY, ObjectiveInputs, get_objective
from tests.objectives import objectives_oracle as oracle

GROUP_SIZES = (2, 4, 8)


@dataclasses.dataclass(frozen=True)
class Problem:
  """An outcome set: environment reward and verifier score per outcome, and the policies."""
  rewards: tuple[float, ...]
  scores: tuple[float, ...]
  policies: tuple[tuple[float, ...], ...]


_TWO = tuple((p, 1 - p) for p in (0.05, 0.2, 0.5, 0.8, 0.95))  # outcome 0 is the failure
_THREE = ((0.1, 0.3, 0.6), (0.5, 0.3, 0.2), (0.2, 0.7, 0.1), (0.05, 0.9, 0.05), (0.6, 0.3, 0.1))
PROBLEMS = {
    # Binary reward selected by itself (a perfect verifier): the pass@N setting.
    "binary2": Problem((0.0, 1.0), (0.0, 1.0), _TWO),
    "binary3": Problem((1.0, 0.0, 1.0), (1.0, 0.0, 1.0), _THREE),
    # Continuous reward selected by itself: the max@N setting.
    "continuous3": Problem((0.2, 0.9, 0.5), (0.2, 0.9, 0.5), _THREE),
    # Binary reward, an imperfect verifier that prefers the incorrect outcome 1.
    "verifier3": Problem((1.0, 0.0, 1.0), (2.0, 3.0, 1.0), _THREE),
}


@dataclasses.dataclass(frozen=True)
class Row:
  """One objective configuration and its target.

  Attributes:
    objective: registry name.
    options: config overrides; "bon_n" / "k" set to the string "N" are filled per N.
    target: "pass" (pass@N of the reward), "max" (E[max of N rewards]), "bon_reward"
      (reward of the verifier's BoN pick), "expert_ll" (E_expert log pi), "ce_bon"
      (cross-entropy to the stop-gradient BoN policy), "tilt_ll" (E_expert log of Chow's
      variational BoN policy, section 3.2).
    problems: PROBLEMS keys it is checked on.
    ns: "all" (N in {1, 2, N'/2, N'}), "full" (N = N' only), "one" (N = 1), "ge2".
    unbiased: E[update] must equal grad target.
    ascends: False for estimators documented to descend somewhere.
  """
  objective: str
  options: tuple[tuple[str, Any], ...]
  target: str
  problems: tuple[str, ...]
  ns: str = "all"
  unbiased: bool = True
  ascends: bool = True


def _row(objective, target, problems, ns="all", unbiased=True, ascends=True, **options):
  return Row(objective, tuple(sorted(options.items())), target, tuple(problems), ns, unbiased,
             ascends)


BIN = ("binary2", "binary3")
ALL_SELF = ("binary2", "binary3", "continuous3")
ROWS = {
    "bon_rlb_loo": _row("bon_rlb", "pass", BIN, estimator="loo", bon_n="N"),
    "bon_rlb_default_n": _row("bon_rlb", "pass", BIN, ns="full"),
    "bon_rlb_plugin_minus": _row("bon_rlb", "pass", BIN, unbiased=False,
                                 estimator="plugin_minus", bon_n="N"),
    "bon_rlb_plugin_plus": _row("bon_rlb", "pass", BIN, unbiased=False, ascends=False,
                                estimator="plugin_plus", bon_n="N"),
    "bon_rlb_p_loo": _row("bon_rlb_p", "pass", BIN, form="loo", bon_n="N"),
    "bon_rlb_p_group_mean": _row("bon_rlb_p", "pass", BIN, unbiased=False, form="group_mean",
                                 bon_n="N"),
    "bon_rlb_p_selected": _row("bon_rlb_p", "pass", BIN, unbiased=False, form="selected",
                               bon_n="N"),
    "pkpo_binary": _row("pkpo", "max", BIN, transform="binary", k="N"),
    "pkpo_s": _row("pkpo", "max", ALL_SELF, transform="s", k="N"),
    "pkpo_s_loo": _row("pkpo", "max", ALL_SELF, transform="s_loo", k="N"),
    "pkpo_s_loo_minus_one": _row("pkpo", "max", ALL_SELF, transform="s_loo_minus_one", k="N"),
    "loo_passk": _row("loo_passk", "max", ALL_SELF, ns="full"),
    "bon_rl_loo_env_env": _row("bon_rl", "bon_reward", ALL_SELF, ns="full", estimator="loo",
                               signal="env", selection="env"),
    "bon_rl_loo_env_verifier": _row("bon_rl", "bon_reward", ("verifier3",), ns="full",
                                    estimator="loo", signal="env", selection="verifier"),
    "bon_rl_selected_mean": _row("bon_rl", "bon_reward", ALL_SELF, ns="full", unbiased=False,
                                 estimator="selected_mean", signal="env", selection="env"),
    "rl_loo": _row("rl", "max", ALL_SELF, ns="one"),
    "rl_none": _row("rl", "max", ALL_SELF, ns="one", baseline="none"),
    "rft_group": _row("rft", "pass", BIN, ns="one"),
    "rft_correct": _row("rft", "pass", BIN, ns="one", unbiased=False, normalize="correct"),
    "sft_best_of_n": _row("sft_best_of_n", "ce_bon", ("verifier3", "continuous3"), ns="full"),
}
# Rows with an expert response (drawn independently from EXPERT).
EXPERT = np.array([0.5, 0.2, 0.3])
EXPERT_ROWS = {
    "sft": _row("sft", "expert_ll", ("verifier3",), ns="full"),
    "bon_sft_softmax": _row("bon_sft", "tilt_ll", ("verifier3", "continuous3"), ns="full",
                            unbiased=False, omega="softmax", lambda_n=4.0),
    "bon_sft_bon_pick": _row("bon_sft", "tilt_ll", ("verifier3", "continuous3"), ns="full",
                             unbiased=False, omega="bon_pick", lambda_n=4.0),
}
# Objectives whose target is not a function of the policy alone.
NO_TARGET = {
    "vbon": "distils BoN of a fixed pi_ref from M reference scores; its expected update (also "
            "over the reference samples) is checked in test_objectives_distill.py",
    "bond": "as vbon: the target depends on pi_ref through M reference scores "
            "(test_objectives_distill.py)",
    "j_bond": "as bond, against a moving EMA anchor: no fixed target",
}


def _ns(row: Row, group: int) -> list[int]:
  return {"all": sorted({1, 2, max(group // 2, 1), group} & set(range(1, group + 1))),
          "full": [group], "one": [1]}[row.ns]


def _config(row: Row, n: int):
  options = {k: (n if v == "N" else v) for k, v in row.options}
  return get_objective(row.objective).make_config(**options)


# ----------------------------------------------------------------------------- enumeration

WIDTH = max(GROUP_SIZES)  # every group is padded to this width (masked slots)
MAX_GROUPS = 3 ** WIDTH  # every enumeration is padded to this many rows (probability 0)


def _instances(rows: dict[str, Row]) -> tuple[list[tuple[str, Any]], dict]:
  """Distinct (objective, config) cases, and {(row, N', N): case index}."""
  cases, index = [], {}
  for name, row in rows.items():
    for group in GROUP_SIZES:
      for n in _ns(row, group):
        case = (row.objective, _config(row, n))
        if case not in cases:
          cases.append(case)
        index[name, group, n] = cases.index(case)
  return cases, index


@functools.lru_cache(maxsize=None)
def _weights_fn(case_key: tuple, with_expert: bool):
  """Jitted (logprobs [T, W], expert_logprobs [T], rewards, scores, expert_scores, mask) ->
  (sample weights [C, T, W], expert weights [C, T]) for the cases of `case_key`."""
  fns = [(get_objective(obj).fn, cfg) for obj, cfg in case_key]

  def losses(logprobs, expert_logprobs, rewards, scores, expert_scores, mask):
    extra = {}
    if with_expert:
      extra = {"expert_logprobs": expert_logprobs[None], "expert_scores": expert_scores[None]}
    inputs = ObjectiveInputs.create(logprobs[None], rewards[None], scores=scores[None],
                                    mask=mask[None], **extra)
    return jnp.stack([fn(inputs, cfg)[0] for fn, cfg in fns])

  batched = jax.vmap(jax.jacrev(losses, argnums=(0, 1)))

  def weights(*args):
    d_samples, d_expert = batched(*args)  # [T, C, W], [T, C]
    return -jnp.moveaxis(d_samples, 1, 0), -jnp.moveaxis(d_expert, 1, 0)
  return jax.jit(weights)


def _padded_groups(num: int, group: int, with_expert: bool):
  """All K^N' groups (and expert outcomes), padded to [MAX_GROUPS, WIDTH] with a mask."""
  groups = oracle.all_groups(num, group)
  experts = np.zeros(len(groups), np.int32)
  if with_expert:
    experts = np.tile(np.arange(num), len(groups))
    groups = np.repeat(groups, num, axis=0)
  rows = MAX_GROUPS * (num if with_expert else 1)
  padded = np.zeros((rows, WIDTH), np.int32)
  padded[:len(groups), :group] = groups
  mask = np.zeros((rows, WIDTH), bool)
  mask[:len(groups), :group] = True
  valid = np.arange(rows) < len(groups)
  return padded, np.pad(experts, (0, rows - len(experts))), mask, valid


def _expected_updates(rows: dict[str, Row], with_expert: bool):
  """{(row, problem, N', N, policy index): E[update] [K]} (one compilation for all)."""
  cases, index = _instances(rows)
  fn = _weights_fn(tuple(cases), with_expert)
  out = {}
  for key, problem in PROBLEMS.items():
    num = len(problem.rewards)
    rewards, scores = np.asarray(problem.rewards), np.asarray(problem.scores)
    for group in GROUP_SIZES:
      wanted = [(name, n, c) for (name, g, n), c in index.items()
                if g == group and key in rows[name].problems]
      if not wanted:
        continue
      groups, experts, mask, valid = _padded_groups(num, group, with_expert)
      for p_index, pi in enumerate(problem.policies):
        pi = np.asarray(pi, np.float64)
        logp = np.log(pi)
        w, w_expert = fn(logp[groups], logp[experts], rewards[groups], scores[groups],
                         scores[experts], mask)
        columns = [c for _, _, c in wanted]
        w = np.asarray(w)[columns][:, valid, :group]
        w_expert = np.asarray(w_expert)[columns][:, valid]
        g, e = groups[valid, :group], experts[valid]
        probs = np.prod(pi[g], axis=-1) * (EXPERT[e] if with_expert else 1.0)
        score = np.eye(num)[g] - pi  # [T, N', K]: grad_theta log pi(y_tj)
        update = np.einsum("t,ctj,tjk->ck", probs, w, score)
        update += np.einsum("t,ct,tk->ck", probs, w_expert, np.eye(num)[e] - pi)
        for (name, n, _), u in zip(wanted, update):
          out[name, key, group, n, p_index] = u
  return out


def _target_key(row: Row, problem_key: str, n: int) -> tuple:
  cfg = _config(row, n)
  return (row.target, problem_key, n, getattr(cfg, "selection", "verifier"),
          getattr(cfg, "lambda_n", None))


def _target(key: tuple, theta: jax.Array) -> jax.Array:
  """The target named by `key` (see Row.target) at softmax(theta)."""
  name, problem_key, n, selection, lam = key
  problem = PROBLEMS[problem_key]
  rewards, scores = np.asarray(problem.rewards), np.asarray(problem.scores)
  q = jax.nn.softmax(theta)
  if name == "pass":
    return oracle.pass_at(q, rewards, n)
  if name == "max":
    return oracle.expected_max(q, rewards, n)
  if name == "bon_reward":
    return oracle.bon_value(q, rewards, rewards if selection == "env" else scores, n)
  if name == "expert_ll":
    return (EXPERT * jnp.log(q)).sum()
  if name == "ce_bon":
    return (jax.lax.stop_gradient(oracle.bon_probs(q, scores, n)) * jnp.log(q)).sum()
  if name == "tilt_ll":
    return (EXPERT * jnp.log(oracle.tilt(q, scores, lam))).sum()
  raise ValueError(name)


def _target_grads(keys: list[tuple], pis: list[np.ndarray]) -> dict:
  """{(key, policy): grad target} with one compilation for all keys of one outcome count."""
  out = {}
  for num in sorted({len(PROBLEMS[k[1]].rewards) for k in keys}):
    subset = [k for k in keys if len(PROBLEMS[k[1]].rewards) == num]
    jac = jax.jit(jax.jacrev(lambda theta: jnp.stack([_target(k, theta) for k in subset])))
    for pi in {tuple(pi) for pi in pis if len(pi) == num}:
      for k, g in zip(subset, np.asarray(jac(jnp.log(jnp.asarray(pi))))):
        out[k, pi] = g
  return out


@pytest.fixture(scope="module")
def results():
  """{row: [(problem, N', N, policy, E[update], grad target)]} over the whole grid."""
  all_rows = {**ROWS, **EXPERT_ROWS}
  updates = {}
  with jax.enable_x64(True):
    for rows, with_expert in ((ROWS, False), (EXPERT_ROWS, True)):
      updates.update(_expected_updates(rows, with_expert))
    keys = sorted({_target_key(all_rows[name], key, n) for name, key, _, n, _ in updates},
                  key=repr)
    grads = _target_grads(keys, [pi for p in PROBLEMS.values() for pi in p.policies])
  out = {name: [] for name in all_rows}
  for (name, key, group, n, index), u in updates.items():
    pi = PROBLEMS[key].policies[index]
    grad = grads[_target_key(all_rows[name], key, n), tuple(pi)]
    out[name].append((key, group, n, np.asarray(pi), u, grad))
  return out


def _ratio(update, grad):
  return float(update @ grad / (grad @ grad))


@pytest.mark.parametrize("name", sorted({**ROWS, **EXPERT_ROWS}))
def test_expected_update_climbs_target(results, name):
  row = {**ROWS, **EXPERT_ROWS}[name]
  assert results[name], f"{name}: no case enumerated"
  inner = [(key, group, n, tuple(pi), float(u @ g), _ratio(u, g))
           for key, group, n, pi, u, g in results[name]]
  if row.ascends:
    bad = [case for case in inner if not case[4] > 0]
    assert not bad, f"{name}: <E[update], grad target> <= 0 at {bad}"
  else:
    assert any(case[4] < 0 for case in inner), f"{name}: documented to descend somewhere"
  if row.unbiased:
    for key, group, n, pi, update, grad in results[name]:
      # 1e-6 relative; the 1e-14 floor is float64 rounding of sums of O(1) probabilities,
      # which only matters where the gradient itself is ~1e-10 (p = 0.05, N = 8).
      np.testing.assert_allclose(update, grad, rtol=0, atol=1e-6 * np.abs(grad).max() + 1e-14,
                                 err_msg=f"{name} {key} N'={group} N={n} pi={pi}")
      if np.abs(grad).max() > 1e-8:
        assert abs(_ratio(update, grad) - 1) < 1e-6
  else:
    # A biased estimator must not be exact everywhere, or it should be marked unbiased.
    assert any(abs(case[5] - 1) > 1e-6 for case in inner), f"{name} is unbiased: mark it"


def test_registry_complete():
  """A new objective cannot be registered without a row here or a stated reason."""
  covered = {row.objective for row in {**ROWS, **EXPERT_ROWS}.values()}
  assert set(REGISTRY) == covered | set(NO_TARGET), (
      f"missing: {sorted(set(REGISTRY) - covered - set(NO_TARGET))}")
  assert not covered & set(NO_TARGET)


def test_bon_rlb_measured_ratios_match_docstring(results):
  """The table of bon_rlb.py's docstring (two outcomes, p = P(incorrect))."""
  table = {("bon_rlb_plugin_plus", 4, 4): [-204.7, -15.83, -1.677, 0.9062, 1.526],
           ("bon_rlb_plugin_plus", 8, 8): [-7.664e4, -331.5, -20.54, -1.156, 2.308],
           ("bon_rlb_plugin_minus", 8, 8): [1.098e5, 537.8, 39.68, 9.586, 4.381],
           ("bon_rlb_p_group_mean", 4, 4): [24.47, 2.672, 0.8438, 0.5186, 0.4417],
           ("bon_rlb_p_selected", 8, 4): [10.87, 2.064, 1.180, 1.293, 1.518]}
  for (name, group, n), want in table.items():
    got = [_ratio(u, g) for key, gs, ns, pi, u, g in results[name]
           if key == "binary2" and gs == group and ns == n]
    np.testing.assert_allclose(got, want, rtol=1e-3, err_msg=name)
