"""Objectives: every BoN-aware / distillation / pass@k algorithm as a pure loss over arrays.

Contract (see `registry.py` and `inputs.py`):

  spec = get_objective("bon_rlb")               # KeyError listing the known names otherwise
  cfg = spec.make_config(bon_n=16)              # frozen dataclass, validated
  loss, metrics = spec.fn(inputs, cfg)          # inputs: ObjectiveInputs ([B, N] arrays)
  loss, metrics = jax.jit(spec.fn, static_argnums=1)(inputs, cfg)

* Each objective computes per-sample weights w under stop_gradient with a small public function
  (`rl_weights`, `bon_rlb_weights`, `pkpo_s_loo_minus_one`, ...) and returns
  `loss = -(1 / #valid rows) sum_b [sum_j w_bj logprobs_bj + its extra terms]` (expert
  log-likelihood, KL to a reference, PPO clipping when configured). A row is valid when it holds
  at least one valid sample; masked samples and padding rows get no gradient.
* Degenerate groups (all rewards equal, one sample, no correct sample, ...) keep their shape and
  get weights that are exactly 0; `metrics` always holds `loss`, `frac_zero_signal_groups` and
  `mean_abs_weight`.
* `spec.required_inputs(cfg)` names the optional inputs a configuration needs (reference
  log-probs, reference scores, expert, anchor), so a training loop knows what to compute.

Registry: sft, sft_best_of_n, rft, rl, bon_sft, bon_rl, bon_rlb, bon_rlb_p, vbon, bond, j_bond,
pkpo, loo_passk. This package imports no model code.
"""

# Objective functions are reached through the registry (or their module, e.g.
# `bonjax.objectives.bon_rl.bon_rl`): re-exporting them here would shadow the module names.
from bonjax.objectives.bon_rl import BoNRLConfig, bon_rl_weights
from bonjax.objectives.bon_rlb import (BoNRLBConfig, BoNRLBPConfig, bon_rlb_coefficients,
                                       bon_rlb_p_weights, bon_rlb_weights)
from bonjax.objectives.bon_sft import (BoNSFTConfig, bon_pick_weights, bon_sft_weights,
                                       group_win_rates)
from bonjax.objectives.bond import (BONDConfig, JBONDConfig, bond_log_ratio, ema_anchor_update)
from bonjax.objectives.group_stats import empirical_cdf
from bonjax.objectives.inputs import ObjectiveInputs
from bonjax.objectives.loo_passk import LOOPassKConfig, loo_max_advantages
from bonjax.objectives.pkpo import (PKPOConfig, max_at_k, pass_at_k_estimate, pkpo_binary, pkpo_s,
                                    pkpo_s_loo, pkpo_s_loo_minus_one, pkpo_weights)
from bonjax.objectives.registry import REGISTRY, ObjectiveSpec, get_objective
from bonjax.objectives.rl import RLConfig, loo_advantages, rl_weights
from bonjax.objectives.sft import (RFTConfig, SFTBestOfNConfig, SFTConfig, rft_weights,
                                   sft_best_of_n_weights)
from bonjax.objectives.tilt import kl_matched_lambda, tilt_kl, tilt_win_rate
from bonjax.objectives.vbon import VBoNConfig, log_bon_ratio, vbon_rewards

__all__ = [
    "BONDConfig", "BoNRLBConfig", "BoNRLBPConfig", "BoNRLConfig", "BoNSFTConfig", "JBONDConfig",
    "LOOPassKConfig", "ObjectiveInputs", "ObjectiveSpec", "PKPOConfig", "REGISTRY", "RFTConfig",
    "RLConfig", "SFTBestOfNConfig", "SFTConfig", "VBoNConfig", "bon_pick_weights",
    "bon_rl_weights", "bon_rlb_coefficients", "bon_rlb_p_weights", "bon_rlb_weights",
    "bon_sft_weights", "bond_log_ratio", "ema_anchor_update", "empirical_cdf", "get_objective",
    "group_win_rates", "kl_matched_lambda", "log_bon_ratio", "loo_advantages",
    "loo_max_advantages", "max_at_k", "pass_at_k_estimate", "pkpo_binary", "pkpo_s",
    "pkpo_s_loo", "pkpo_s_loo_minus_one", "pkpo_weights", "rft_weights", "rl_weights",
    "sft_best_of_n_weights", "tilt_kl", "tilt_win_rate", "vbon_rewards",
]
