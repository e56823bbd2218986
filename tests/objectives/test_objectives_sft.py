"""sft, sft_best_of_n, rft: expected gradients by exact enumeration vs closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.objectives import (RFTConfig, SFTBestOfNConfig, SFTConfig, rft_weights,
                               sft_best_of_n_weights)
from tests.objectives import objectives_oracle as oracle


@pytest.fixture(autouse=True)
def _float64():
  with jax.enable_x64(True):
    yield


DATA = jnp.asarray([0.1, 0.2, 0.3, 0.2, 0.2])  # distribution of expert responses
N = 3
CASES = {
    "sft": ("sft", SFTConfig()),
    "best_of_n_verifier": ("sft_best_of_n", SFTBestOfNConfig(selection="verifier")),
    "best_of_n_env": ("sft_best_of_n", SFTBestOfNConfig(selection="env")),
    "rft_group": ("rft", RFTConfig(normalize="group")),
    "rft_correct": ("rft", RFTConfig(normalize="correct")),
}


@pytest.fixture(scope="module")
def expected():
  """Expected loss gradients by enumeration of every group of 3 and expert outcome."""
  with jax.enable_x64(True):
    def build(theta, payload):
      group, expert = payload[:-1], payload[-1]
      return oracle.row_inputs(theta, group, oracle.REWARDS, oracle.SCORES,
                               expert_logprobs=jax.nn.log_softmax(theta)[expert][None])
    theta = oracle.theta0()
    payload, probs = oracle.enumerate_groups(theta, N, expert_probs=DATA)
    return theta, oracle.expected_grads(CASES, build, theta, payload, probs)


def test_sft_expected_gradient_is_cross_entropy_gradient(expected):
  theta, got = expected
  want = jax.grad(lambda t: -(DATA * jax.nn.log_softmax(t)).sum())(theta)
  np.testing.assert_allclose(got["sft"], want, atol=1e-12)


@pytest.mark.parametrize("selection", ["verifier", "env"])
def test_sft_best_of_n_expected_gradient_is_sft_toward_t2_bon(expected, selection):
  """E[grad] = -sum_y P_bon(y) grad log pi(y), P_bon from T2 (index ties; the verifier has
  a tie at its top level and the binary reward ties everywhere)."""
  theta, got = expected
  pi = jax.nn.softmax(theta)
  selector = oracle.SCORES if selection == "verifier" else oracle.REWARDS
  target = jax.lax.stop_gradient(oracle.bon_probs(pi, selector, N))
  want = jax.grad(lambda t: -(target * jax.nn.log_softmax(t)).sum())(theta)
  np.testing.assert_allclose(got[f"best_of_n_{selection}"], want, atol=1e-12)


def test_t2_reference_values():
  pi = jnp.asarray([0.1, 0.2, 0.3, 0.4])
  np.testing.assert_allclose(oracle.bon_probs(pi, np.array([1, 2, 2, 3]), 3),
                             [0.001, 0.086, 0.129, 0.784], atol=1e-12)
  np.testing.assert_allclose(oracle.expected_max(pi, np.array([1., 2, 2, 3]), 3), 2.783,
                             atol=1e-12)


def test_rft_group_normalisation_is_exact_pass_at_1_gradient(expected):
  theta, got = expected
  want = jax.grad(lambda t: -oracle.pass_at(jax.nn.softmax(t), oracle.REWARDS, 1))(theta)
  np.testing.assert_allclose(got["rft_group"], want, atol=1e-12)


def test_rft_correct_normalisation_expectation_given_p(expected):
  """Averaging over the c correct samples: E = (1 - p^n) E_+ = (1 - p^n)/s grad s (biased
  toward easy prompts compared with grad s, same direction)."""
  theta, got = expected
  s = float(oracle.pass_at(jax.nn.softmax(theta), oracle.REWARDS, 1))
  grad_s = jax.grad(lambda t: oracle.pass_at(jax.nn.softmax(t), oracle.REWARDS, 1))(theta)
  np.testing.assert_allclose(got["rft_correct"], -(1 - (1 - s) ** N) / s * grad_s, atol=1e-12)


def test_rft_and_sft_best_of_n_weights_by_hand():
  correct = jnp.array([[True, False, True, False], [False, False, False, False]])
  mask = jnp.array([[True, True, True, False], [True, True, True, True]])
  np.testing.assert_allclose(oracle.jit_call(rft_weights, correct, mask, normalize="group"),
                             [[1 / 3, 0, 1 / 3, 0], [0, 0, 0, 0]])
  np.testing.assert_allclose(oracle.jit_call(rft_weights, correct, mask, normalize="correct"),
                             [[0.5, 0, 0.5, 0], [0, 0, 0, 0]])
  scores = jnp.array([[0.5, 2.0, 2.0, 9.0], [1.0, 1.0, 1.0, 1.0]])
  # Masked 9.0 is ignored; the tie at 2.0 goes to the first index.
  np.testing.assert_array_equal(oracle.jit_call(sft_best_of_n_weights, scores, mask),
                                [[0, 1, 0, 0], [1, 0, 0, 0]])


def test_supervised_nll_token_and_sequence_normalisation_by_hand():
  """One function, two averages: per target token (algorithm="sft") and per sequence (the
  `sft` objective); padding rows are left out of both."""
  from bonjax.objectives.sft import supervised_nll
  logp = jnp.asarray([-2.0, -4.0, -9.0])
  rows = jnp.asarray([True, True, False])
  tokens = jnp.asarray([1, 3, 5])
  assert float(supervised_nll(logp, rows, tokens, "token")) == pytest.approx(6.0 / 4.0)
  assert float(supervised_nll(logp, rows, None, "sequence")) == pytest.approx(6.0 / 2.0)
  assert float(supervised_nll(logp, jnp.zeros(3, bool), tokens, "token")) == 0.0
  with pytest.raises(ValueError, match="normalize='row'"):
    supervised_nll(logp, rows, tokens, "row")
