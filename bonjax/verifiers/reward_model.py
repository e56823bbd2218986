"""A learned verifier: an outcome reward model (ORM), the transformer with a scalar head.

The ORM reads [prompt | completion + EOS] and predicts, from the final-norm hidden state of the
last real token, the logit of P(the completion is correct). It is trained with binary
cross-entropy on (prompt, completion, correct) triples harvested from a policy's own samples
(bonjax.training.reward_model), and serves as the selection score r of Best-of-N and of the
`-V` objectives through `LearnedVerifier` (config `verifier.kind = "learned"`).

One tokenisation function, `encode_pairs`, builds the ORM's input both when it is trained and
when it scores, so the two can never disagree about what the model sees.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from bonjax.data.batching import bucket_length, encode_prompt, left_pad, right_pad
from bonjax.models import transformer
from bonjax.models.logprobs import token_logprobs
from bonjax.models.config import ModelConfig, get_preset
from bonjax.tokenizers.base import Tokenizer
from bonjax.tokenizers.hf import TOKENIZER_FILE, HFTokenizer
from bonjax.checkpoints.tokenizer_registry import build_tokenizer
from bonjax.verifiers.base import Verifier, VerifierResult

Params = Any

META_FILE = "reward_model.json"
PARAMS_DIR = "params"


def init_head(cfg: ModelConfig) -> Params:
  """A zero scalar head: the untrained ORM predicts 0.5 for everything.

  `w` reads the final hidden state; `likelihood` weighs the backbone's own mean log-probability
  of the completion tokens, so the ORM can start from the generator's confidence (the policy's
  likely answers are more often right: maj@k > pass@1) and learn how much to trust it.
  """
  return {"w": jnp.zeros((cfg.d_model,), jnp.float32), "b": jnp.zeros((), jnp.float32),
          "likelihood": jnp.zeros((), jnp.float32)}


def init_reward_model(backbone: Params, cfg: ModelConfig) -> Params:
  """ORM parameters from a backbone (usually the policy whose samples it will judge)."""
  return {"backbone": backbone, "head": init_head(cfg)}


def encode_pairs(tokenizer: Tokenizer, prompts: Sequence[str], completions: Sequence[str],
                 prompt_buckets: Sequence[int],
                 completion_buckets: Sequence[int]) -> dict[str, np.ndarray]:
  """Tokenises (prompt, completion) pairs into [left-padded prompt | completion + EOS | pad].

  Model output can be arbitrarily long, so instead of failing, a prompt or completion longer
  than the largest bucket keeps its last tokens (where a final answer is).

  Args:
    tokenizer: the ORM's tokenizer.
    prompts: prompt texts.
    completions: completion texts, one per prompt.
    prompt_buckets: allowed padded prompt lengths.
    completion_buckets: allowed padded completion lengths (EOS included).

  Returns:
    dict with `tokens` int32 [B, P+L], `valid` bool [B, P+L] and `target_mask` bool [B, P+L]
    (the completion tokens, EOS included).
  """
  if len(prompts) != len(completions):
    raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
  max_prompt, max_completion = max(prompt_buckets), max(completion_buckets)
  prompt_rows = [encode_prompt(tokenizer, p)[-max_prompt:] for p in prompts]
  completion_rows = [(tokenizer.encode(c) + [tokenizer.eos_id])[-max_completion:]
                     for c in completions]
  prompt_width = bucket_length(max(map(len, prompt_rows)), prompt_buckets)
  completion_width = bucket_length(max(map(len, completion_rows)), completion_buckets)
  prompt_tokens, prompt_valid = left_pad(prompt_rows, prompt_width, tokenizer.pad_id)
  completion_tokens, completion_valid = right_pad(completion_rows, completion_width,
                                                  tokenizer.pad_id)
  return {"tokens": np.concatenate([prompt_tokens, completion_tokens], axis=1),
          "valid": np.concatenate([prompt_valid, completion_valid], axis=1),
          "target_mask": np.concatenate([np.zeros_like(prompt_valid), completion_valid], axis=1)}


def orm_logits(params: Params, cfg: ModelConfig, tokens: jax.Array, valid: jax.Array,
               target_mask: jax.Array, compute_dtype: Any = jnp.float32) -> jax.Array:
  """Correctness logits [B]: the head on the hidden state of each row's last real token, plus
  `likelihood` x the backbone's mean log-probability of the completion tokens.

  Args:
    params: {"backbone": transformer params, "head": see `init_head`}.
    cfg: the backbone's architecture.
    tokens: int32 [B, T] from `encode_pairs`.
    valid: bool [B, T].
    target_mask: bool [B, T] completion tokens.
    compute_dtype: activation dtype of the backbone.
  """
  backbone, head = params["backbone"], params["head"]
  h = transformer.hidden_states(backbone, cfg, tokens, transformer.positions_from_valid(valid),
                                valid, compute_dtype=compute_dtype)
  last = valid.shape[1] - 1 - jnp.argmax(valid[:, ::-1], axis=1)
  h_last = jnp.take_along_axis(h, last[:, None, None], axis=1)[:, 0].astype(jnp.float32)
  # Position t is predicted by the hidden state at t - 1 (vocabulary chunked, never [B, T, V]).
  token_logp = jnp.where(target_mask[:, 1:],
                         token_logprobs(backbone, cfg, h[:, :-1], tokens[:, 1:]), 0.0)
  mean_logp = token_logp.sum(-1) / jnp.maximum(target_mask[:, 1:].sum(-1), 1)
  # HIGHEST: float32, not TF32, on GPUs.
  return (jnp.matmul(h_last, head["w"], precision=jax.lax.Precision.HIGHEST) + head["b"]
          + head["likelihood"] * mean_logp)


def orm_loss(params: Params, cfg: ModelConfig, batch: dict[str, jax.Array],
             compute_dtype: Any = jnp.float32) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Mean binary cross-entropy of the ORM on a batch of labelled pairs.

  Args:
    params: ORM parameters.
    cfg: backbone architecture.
    batch: `tokens`, `valid`, `target_mask` (from `encode_pairs`), `labels` float [B] in {0, 1}.
    compute_dtype: activation dtype.

  Returns:
    (loss, metrics with `loss` and `accuracy` at threshold 0.5).
  """
  logits = orm_logits(params, cfg, batch["tokens"], batch["valid"], batch["target_mask"],
                      compute_dtype)
  loss = optax.sigmoid_binary_cross_entropy(logits, batch["labels"]).mean()
  accuracy = ((logits > 0) == (batch["labels"] > 0.5)).mean()
  return loss, {"loss": loss, "accuracy": accuracy}


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
  """Area under the ROC curve: P(score of a random positive > that of a random negative),
  ties counting one half (the Mann-Whitney U statistic over n_pos * n_neg).

  Args:
    scores: [n] real scores.
    labels: [n] booleans (True = positive).

  Returns:
    the AUC in [0, 1], or None when either class is absent (AUC undefined).
  """
  scores = np.asarray(scores, dtype=np.float64).ravel()
  labels = np.asarray(labels, dtype=bool).ravel()
  if scores.shape != labels.shape:
    raise ValueError(f"scores has {scores.size} entries but labels {labels.size}")
  num_pos, num_neg = int(labels.sum()), int((~labels).sum())
  if num_pos == 0 or num_neg == 0:
    return None
  # Average 1-based ranks, tied scores sharing the mean of their rank range.
  unique, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
  ends = np.cumsum(counts)
  mean_rank = ends - (counts - 1) / 2.0
  ranks = mean_rank[inverse]
  return float((ranks[labels].sum() - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg))


def within_prompt_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
  """Mean over prompts of the AUC among each prompt's own samples: what Best-of-N selection
  depends on (a score that only tells easy prompts from hard ones has a high pooled AUC but
  0.5 here). Prompts whose samples are all right or all wrong are left out.

  Args:
    scores: [B, n] scores.
    labels: [B, n] booleans.

  Returns:
    the mean, or None when no prompt has both classes.
  """
  per_prompt = [a for a in (roc_auc(s, y) for s, y in zip(scores, labels)) if a is not None]
  return float(np.mean(per_prompt)) if per_prompt else None


@functools.partial(jax.jit, static_argnames=("cfg", "compute_dtype"))
def _probabilities(params: Params, cfg: ModelConfig, batch: dict[str, jax.Array],
                   compute_dtype: Any) -> jax.Array:
  return jax.nn.sigmoid(orm_logits(params, cfg, batch["tokens"], batch["valid"],
                                   batch["target_mask"], compute_dtype))


def score_pairs(params: Params, cfg: ModelConfig, tokenizer: Tokenizer, prompts: Sequence[str],
                completions: Sequence[str], prompt_buckets: Sequence[int],
                completion_buckets: Sequence[int], batch_size: int = 256,
                compute_dtype: Any = jnp.float32) -> np.ndarray:
  """P(correct) [n] for each pair, in fixed-size chunks (the last padded) so that scoring
  compiles once per bucket shape, however many pairs come."""
  if not completions:
    return np.zeros((0,), np.float64)
  pairs = encode_pairs(tokenizer, prompts, completions, prompt_buckets, completion_buckets)
  size = len(completions)
  out = []
  for start in range(0, size, batch_size):
    take = np.arange(start, min(start + batch_size, size))
    padded = np.concatenate([take, np.full(batch_size - len(take), take[0])])
    probs = _probabilities(params, cfg, {k: jnp.asarray(v[padded]) for k, v in pairs.items()},
                           compute_dtype)
    out.append(np.asarray(probs, dtype=np.float64)[:len(take)])
  return np.concatenate(out)


class LearnedVerifier:
  """Selection scores from an ORM; correctness, answers and statuses from an exact verifier.

  The environment reward R stays exact (it is what pass@k and the `-S` objectives use); the
  score r = P(correct) under the ORM is what Best-of-N selection and the `-V` objectives see.

  Args:
    base: exact verifier supplying `correct`, `answer` and `status`.
    params: ORM parameters.
    cfg: backbone architecture.
    tokenizer: the ORM's tokenizer.
    prompt_buckets: padded prompt lengths of `encode_pairs`.
    completion_buckets: padded completion lengths of `encode_pairs`.
    batch_size: pairs per ORM call.
  """

  def __init__(self, base: Verifier, params: Params, cfg: ModelConfig, tokenizer: Tokenizer,
               prompt_buckets: Sequence[int], completion_buckets: Sequence[int],
               batch_size: int = 256):
    self.base, self.params, self.cfg, self.tokenizer = base, params, cfg, tokenizer
    self.prompt_buckets = tuple(prompt_buckets)
    self.completion_buckets = tuple(completion_buckets)
    self.batch_size = batch_size

  def verify(self, prompts: Sequence[str], completions: Sequence[str],
             **columns: Sequence[Any]) -> list[VerifierResult]:
    results = self.base.verify(prompts, completions, **columns)
    start = time.perf_counter()
    # Text the tokenizer cannot encode (e.g. outside a character alphabet) is scored 0, the
    # lowest probability, instead of failing the whole batch.
    encodable = [_encodes(self.tokenizer, p) and _encodes(self.tokenizer, c)
                 for p, c in zip(prompts, completions)]
    keep = [i for i, ok in enumerate(encodable) if ok]
    probs = np.zeros(len(completions))
    probs[keep] = score_pairs(self.params, self.cfg, self.tokenizer, [prompts[i] for i in keep],
                              [completions[i] for i in keep], self.prompt_buckets,
                              self.completion_buckets, self.batch_size)
    per_item = (time.perf_counter() - start) / max(len(completions), 1)
    return [VerifierResult(score=float(p), correct=r.correct, status=r.status, answer=r.answer,
                           seconds=r.seconds + per_item,
                           detail=r.detail if ok else "reward model: text not encodable",
                           reward=r.reward)
            for p, r, ok in zip(probs, results, encodable)]


def _encodes(tokenizer: Tokenizer, text: str) -> bool:
  try:
    tokenizer.encode(text)
  except ValueError:
    return False
  return True


def save_reward_model(directory: str, params: Params, meta: dict[str, Any]) -> None:
  """Writes the ORM as an orbax checkpoint (`params/`) plus `reward_model.json`.

  Args:
    directory: destination (created; an existing ORM there is replaced).
    params: ORM parameters.
    meta: JSON-able record; must hold `config` (the run config as a dict: model preset,
      tokenizer) and `prompt_buckets` / `completion_buckets`.
  """
  directory = os.path.abspath(directory)
  os.makedirs(directory, exist_ok=True)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(directory, PARAMS_DIR), params, force=True)
  checkpointer.wait_until_finished()
  checkpointer.close()
  with open(os.path.join(directory, META_FILE), "w", encoding="utf-8") as f:
    json.dump(meta, f, indent=2, allow_nan=False)
    f.write("\n")


def load_reward_model(directory: str) -> tuple[Params, ModelConfig, Tokenizer, dict[str, Any]]:
  """Reads an ORM written by `save_reward_model`.

  Returns:
    (params, backbone architecture, tokenizer, meta).

  Raises:
    FileNotFoundError: no ORM in `directory`, with the command that trains one.
  """
  directory = os.path.abspath(directory)
  meta_path = os.path.join(directory, META_FILE)
  if not os.path.exists(meta_path):
    raise FileNotFoundError(
        f"verifier.checkpoint={directory!r}: no {META_FILE} there; train a learned verifier "
        f"first with `python -m launch.train_verifier --workdir={directory}`")
  with open(meta_path, encoding="utf-8") as f:
    meta = json.load(f)
  config = ml_collections.ConfigDict(meta["config"])
  # ORMs of policies from HF checkpoints record their architecture and tokenizer files.
  cfg = ModelConfig(**meta["model"]) if "model" in meta else get_preset(config.model.preset)
  abstract = jax.eval_shape(
      lambda: init_reward_model(transformer.init_params(cfg, jax.random.key(0)), cfg))
  checkpointer = ocp.StandardCheckpointer()
  params = checkpointer.restore(os.path.join(directory, PARAMS_DIR), abstract)
  checkpointer.close()
  tokenizer = (HFTokenizer.from_directory(directory)
               if os.path.exists(os.path.join(directory, TOKENIZER_FILE)) else
               build_tokenizer(config))
  return params, cfg, tokenizer, meta


def load_learned_verifier(base: Verifier, directory: str) -> LearnedVerifier:
  """A LearnedVerifier over `base` with the ORM saved in `directory`."""
  params, cfg, tokenizer, meta = load_reward_model(directory)
  return LearnedVerifier(base, params, cfg, tokenizer, meta["prompt_buckets"],
                         meta["completion_buckets"])
