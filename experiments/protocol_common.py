"""What every comparison protocol shares, for any task and model: the arms (each an objective
of the registry with its options, applied to a base config with the same sampling budget per
step, train.batch_size prompts x N samples, so the arms differ only in how they weight samples)
and the protocol config that launch/protocol_run.py reads.

experiments/arith3_protocol.py runs them on 3-digit arithmetic from a tiny model,
experiments/math_jsonl_protocol.py on a MATH-format JSON-lines file from a pretrained model.
"""

import ml_collections

# KL weight of the KL-regularised RL arm that vBoN is compared with.
RL_KL_COEF = 0.05


def arm_objectives(n: int) -> dict[str, tuple[str, dict, str]]:
  """Arm -> (objective registry name, objective options, what it stands for), with the
  BoN-aware arms targeting Best-of-`n` from groups of `n` samples."""
  return {
      "rl_s": ("rl", dict(signal="env"), "RL-S: REINFORCE, leave-one-out baseline, N' = N"),
      "bon_rl_s": ("bon_rl", dict(signal="env", selection="env", estimator="selected_mean"),
                   "BoN-RL-S: reward of the BoN pick by the environment reward"),
      "bon_rl_v": ("bon_rl", dict(signal="verifier", selection="verifier",
                                  estimator="selected_mean"),
                   "BoN-RL-V: reward of the BoN pick by the learned verifier"),
      "bon_rlb": ("bon_rlb", dict(bon_n=n), "BoN-RLB: closed-form pass@N gradient (default "
                                            "estimator)"),
      "bon_rlb_p": ("bon_rlb_p", dict(bon_n=n), "BoN-RLB(P): positive samples only (default, "
                                                "unbiased form)"),
      "bon_rlb_p_gm": ("bon_rlb_p", dict(bon_n=n, form="group_mean"),
                       "BoN-RLB(P), the paper's plug-in p_hat^(N-1) form (biased)"),
      "pkpo": ("pkpo", dict(k=n, transform="s_loo_minus_one"), "PKPO, k = N"),
      "loo_passk": ("loo_passk", dict(signal="env"), "leave-one-out pass@N gradient"),
      "sft": ("sft", {}, "SFT on gold answers (the BoN-SFT baseline)"),
      "bon_sft": ("bon_sft", dict(bon_n=n), "BoN-SFT: expert likelihood under the BoN policy"),
      "vbon": ("vbon", dict(bon_n=n, reward="exact"), "vBoN: distil BoN-N of the start"),
      "rl_kl": ("rl", dict(signal="env", kl_coef=RL_KL_COEF), "KL-regularised RL-S (vs vBoN)"),
  }


ARM_NAMES = tuple(arm_objectives(1))


def apply_arm(c: ml_collections.ConfigDict, arm: str, n: int,
              verifier_checkpoint: str) -> ml_collections.ConfigDict:
  """Makes `c` arm `arm` with groups of `n` samples; returns `c`.

  Args:
    c: the base config (task, model, warm start); changed in place.
    arm: a name of `arm_objectives`.
    n: samples per prompt N' (= the Best-of-N target N of the BoN-aware arms).
    verifier_checkpoint: BoN-RL-V's learned verifier (the protocol points it at its own).

  Returns:
    `c`.
  """
  arms = arm_objectives(n)
  if arm not in arms:
    raise ValueError(f"arm {arm!r}: must be one of {sorted(arms)}")
  algorithm, objective, _ = arms[arm]
  c.algorithm = algorithm
  c.objective = ml_collections.ConfigDict(objective)
  c.sampling.num_samples = n
  # Selection verifier during training: exact for "-S" arms (they never read scores);
  # BoN-RL-V trains on the learned one.
  if arm == "bon_rl_v":
    c.verifier.kind = "learned"
    c.verifier.checkpoint = verifier_checkpoint
  c.reference.num_samples = 2 * n  # vBoN's reference CDF samples per prompt.
  return c


def build_protocol(scale: str, s: dict, *, title: str, start_description: str,
                   warm_start: tuple[str, str], verifier: tuple[str, str],
                   arms_config: tuple[str, str], target_n: int) -> ml_collections.ConfigDict:
  """The protocol config of launch/protocol_run.py.

  Args:
    scale: the scale's name (shown in the report's title).
    s: the scale's sizes: arms, seeds, arm_steps, batch_size, learning_rate, eval_every,
      dev_prompts, dev_samples, eval_prompts, eval_samples, max_k, kl_num_samples,
      temperatures, coscaling_temperatures, coscaling_prompts, coscaling_samples, bootstrap.
    title: the report's title.
    start_description: what the warm start is, for the report's setup line.
    warm_start, verifier, arms_config: (module under experiments/, its get_config argument);
      a verifier argument of "" trains no verifier (evaluations rank by the imperfect
      stand-in and BoN-RL-V is dropped).
    target_n: the Best-of-N the BoN-aware arms target (their group size).

  Returns:
    The protocol.
  """
  p = ml_collections.ConfigDict()
  p.scale = scale
  p.baseline = "rl_s"  # Differences are reported against this arm.
  p.target_n = target_n
  # Paired comparisons beside the baseline: (arm, its own reference arm).
  p.pairs = (("bon_sft", "sft"), ("vbon", "rl_kl"))
  p.title, p.start_description = title, start_description
  p.warm_start = ml_collections.ConfigDict(dict(config=warm_start[0], argument=warm_start[1]))
  p.arms_config = ml_collections.ConfigDict(dict(config=arms_config[0], argument=arms_config[1]))
  p.verifier = ml_collections.ConfigDict(dict(config=verifier[0], argument=verifier[1]))
  p.arms = tuple(a for a in s["arms"] if verifier[1] or a != "bon_rl_v")
  p.seeds = tuple(s["seeds"])
  p.train = ml_collections.ConfigDict(dict(
      num_steps=s["arm_steps"], batch_size=s["batch_size"], learning_rate=s["learning_rate"],
      eval_every=s["eval_every"], warmup_steps=min(10, s["arm_steps"]),
      checkpoint_every=s["arm_steps"], log_every=min(10, s["arm_steps"])))
  p.dev = ml_collections.ConfigDict(dict(num_prompts=s["dev_prompts"],
                                         num_samples=s["dev_samples"]))
  p.eval = ml_collections.ConfigDict(dict(
      num_prompts=s["eval_prompts"], num_samples=s["eval_samples"], max_k=s["max_k"],
      kl_num_samples=s["kl_num_samples"], temperatures=tuple(s["temperatures"]), common_seed=0,
      prompt_batch_size=min(50, s["eval_prompts"]), bootstrap_resamples=s["bootstrap"]))
  p.coscaling = ml_collections.ConfigDict(dict(
      temperatures=tuple(s["coscaling_temperatures"]), num_prompts=s["coscaling_prompts"],
      num_samples=s["coscaling_samples"]))
  return p
