"""The objective registry: name -> ObjectiveSpec (pure loss function + its config class).

Every objective has the signature

  objective(inputs: ObjectiveInputs, cfg: <its config class>) -> (loss scalar, metrics dict)

is pure and jit-compatible (the config is a frozen, hashable dataclass: close over it or pass it
as a static argument), and computes its per-sample weights under stop_gradient. Every metrics
dict holds `loss`, `frac_zero_signal_groups` and `mean_abs_weight`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax

from bonjax.objectives import (bon_rl, bon_rlb, bon_sft, bond, loo_passk, pkpo, rl, sft, vbon)
from bonjax.objectives.inputs import ObjectiveInputs

ObjectiveFn = Callable[[ObjectiveInputs, Any], tuple[jax.Array, dict]]


@dataclasses.dataclass(frozen=True)
class ObjectiveSpec:
  """One registry entry.

  Attributes:
    name: registry key.
    fn: the pure loss function.
    config_class: frozen dataclass of its options (all fields have defaults).
    summary: one line on what it optimises.
    needs_reference: the default config reads `ref_logprobs` (a reference forward pass).
    needs_ref_scores: the default config reads `ref_scores` (scored reference samples).
    needs_expert: the default config reads `expert_logprobs` (an expert / target response).
    needs_anchor: the default config reads `anchor_logprobs` (J-BOND's EMA anchor).
    needs_samples: trains on the policy's own samples (on-policy); False for an objective of
      expert responses alone, which the supervised trainer runs without sampling.
  """

  name: str
  fn: ObjectiveFn
  config_class: type
  summary: str
  needs_reference: bool = False
  needs_ref_scores: bool = False
  needs_expert: bool = False
  needs_anchor: bool = False
  needs_samples: bool = True

  def make_config(self, **overrides: Any) -> Any:
    """Builds and validates a config; unknown fields raise TypeError naming the objective."""
    known = {f.name for f in dataclasses.fields(self.config_class)}
    unknown = sorted(set(overrides) - known)
    if unknown:
      raise TypeError(f"objective {self.name!r} has no config field(s) {unknown}; known: "
                      f"{sorted(known)}")
    cfg = self.config_class(**overrides)
    cfg.validate()
    return cfg

  def required_inputs(self, cfg: Any | None = None) -> frozenset[str]:
    """Optional ObjectiveInputs fields that `cfg` (default config if None) needs."""
    return (cfg if cfg is not None else self.config_class()).required_inputs()

  def __call__(self, inputs: ObjectiveInputs, cfg: Any | None = None
               ) -> tuple[jax.Array, dict]:
    return self.fn(inputs, cfg if cfg is not None else self.config_class())


def _spec(name: str, fn: ObjectiveFn, config_class: type, summary: str,
          needs_samples: bool = True) -> ObjectiveSpec:
  needed = config_class().required_inputs()
  return ObjectiveSpec(name=name, fn=fn, config_class=config_class, summary=summary,
                       needs_reference="ref_logprobs" in needed,
                       needs_ref_scores="ref_scores" in needed,
                       needs_expert="expert_logprobs" in needed,
                       needs_anchor="anchor_logprobs" in needed, needs_samples=needs_samples)


_ENTRIES = (
    _spec("sft", sft.sft, sft.SFTConfig, "log-likelihood of an expert response",
          needs_samples=False),
    _spec("sft_best_of_n", sft.sft_best_of_n, sft.SFTBestOfNConfig,
          "SFT on the verifier-selected sample of the group"),
    _spec("rft", sft.rft, sft.RFTConfig, "rejection-sampling fine-tuning: SFT on correct samples"),
    _spec("rl", rl.rl, rl.RLConfig, "REINFORCE / PPO with a leave-one-out baseline (RL-S, RL-V)"),
    _spec("bon_sft", bon_sft.bon_sft, bon_sft.BoNSFTConfig,
          "expert likelihood under the variational BoN policy (Chow et al.)"),
    _spec("bon_rl", bon_rl.bon_rl, bon_rl.BoNRLConfig,
          "reward of the BoN pick (BoN-RL-S / BoN-RL-V)"),
    _spec("bon_rlb", bon_rlb.bon_rlb, bon_rlb.BoNRLBConfig,
          "closed-form pass@N gradient with positive and negative samples"),
    _spec("bon_rlb_p", bon_rlb.bon_rlb_p, bon_rlb.BoNRLBPConfig,
          "closed-form pass@N gradient from positive samples only"),
    _spec("vbon", vbon.vbon, vbon.VBoNConfig, "variational BoN distillation of pi_ref"),
    _spec("bond", bond.bond, bond.BONDConfig,
          "Jeffreys-divergence distillation of BoN of pi_ref (BOND)"),
    _spec("j_bond", bond.j_bond, bond.JBONDConfig,
          "iterative Best-of-2 distillation against an EMA anchor (J-BOND)"),
    _spec("pkpo", pkpo.pkpo, pkpo.PKPOConfig, "unbiased pass@k / max@k policy gradient (PKPO)"),
    _spec("loo_passk", loo_passk.loo_passk, loo_passk.LOOPassKConfig,
          "leave-one-out pass@n / max@n policy gradient (Tang et al.)"),
)

REGISTRY: Mapping[str, ObjectiveSpec] = {spec.name: spec for spec in _ENTRIES}


def trains_on_samples(name: str) -> bool:
  """Whether training with objective `name` samples from the policy (an unknown name counts
  as on-policy: building its trainer then reports the name)."""
  spec = REGISTRY.get(name)
  return spec is None or spec.needs_samples


def get_objective(name: str) -> ObjectiveSpec:
  """Returns the registry entry `name`.

  Raises:
    KeyError: for an unknown name, listing the known names.
  """
  try:
    return REGISTRY[name]
  except KeyError:
    raise KeyError(f"unknown objective {name!r}; known objectives: "
                   f"{', '.join(sorted(REGISTRY))}") from None
