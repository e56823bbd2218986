"""A learned verifier (outcome reward model) as a Verifier: scoring pairs with the ORM
(`bonjax.models.reward_model`), and saving / loading it (`verifier.kind = "learned"`).

The ORM is trained with binary cross-entropy on (prompt, completion, correct) triples harvested
from a policy's own samples (bonjax.training.reward_model), and serves as the selection score r
of Best-of-N and of the `-V` objectives through `LearnedVerifier`.

One tokenisation function, `bonjax.data.batching.encode_pairs`, builds the ORM's input both
when it is trained and when it scores, so the two can never disagree about what the model sees.
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
import orbax.checkpoint as ocp

from bonjax.checkpoints.tokenizer_registry import build_tokenizer
from bonjax.data.batching import encode_pairs, padded_chunks
from bonjax.models import transformer
from bonjax.models.config import ModelConfig, get_preset
from bonjax.models.reward_model import Params, init_reward_model, orm_logits
from bonjax.tokenizers.base import Tokenizer
from bonjax.tokenizers.hf import TOKENIZER_FILE, HFTokenizer
from bonjax.verifiers.base import Verifier, VerifierResult

META_FILE = "reward_model.json"
PARAMS_DIR = "params"


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
  for take, padded in padded_chunks(size, batch_size):
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
