"""Sampler throughput (generated tokens/s) against the number of samples per prompt.

Usage:
  python benchmarks/sampler_throughput.py                          # tiny preset
  python benchmarks/sampler_throughput.py --preset smollm2-135m --dtype bfloat16

Random weights; B prompts of random lengths (left-padded to P); no stop token, so every sample
runs the full L tokens and tokens/s = B * N * L / wall time of one call. Compile time is
excluded by a warm-up call (and reported separately).

Prefill is shown not to grow with N two ways: the wall time of a call with L = 1 (prefill plus
one draw) with the shared prompt cache versus `prefill_per_sample=True`, and the XLA FLOP count
of the prefill the sampler runs: on the B prompts (shared cache, any N) versus B * N rows.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from bonjax.models import config as model_config
from bonjax.models import kv_cache
from bonjax.models import transformer
from bonjax.sampling import sampler
from timing import timed, xla_flops  # benchmarks/timing.py, beside this script


def _prompts(batch: int, prompt_len: int, vocab: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(prompt_len // 2, prompt_len + 1, size=batch)
  tokens = np.zeros((batch, prompt_len), np.int32)
  valid = np.zeros((batch, prompt_len), bool)
  for b, n in enumerate(lengths):
    tokens[b, prompt_len - n:] = rng.integers(3, vocab, size=n)
    valid[b, prompt_len - n:] = True
  return jnp.asarray(tokens), jnp.asarray(valid), jnp.arange(batch, dtype=jnp.int32)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="tiny", choices=model_config.preset_names())
  parser.add_argument("--batch", type=int, default=4, help="B prompts")
  parser.add_argument("--prompt_len", type=int, default=32, help="P (left-padded)")
  parser.add_argument("--max_new_tokens", type=int, default=64, help="L")
  parser.add_argument("--num_samples", default="1,4,16,64", help="comma-separated N values")
  parser.add_argument("--temperature", type=float, default=1.0)
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()

  cfg = model_config.get_preset(args.preset)
  dtype = jnp.dtype(args.dtype)
  params = transformer.init_params(cfg, jax.random.key(0))
  tokens, valid, ids = _prompts(args.batch, args.prompt_len, cfg.vocab_size)
  rng = jax.random.key(1)
  print(f"preset={args.preset} params={cfg.num_params() / 1e6:.1f}M dtype={args.dtype} "
        f"B={args.batch} P={args.prompt_len} L={args.max_new_tokens} T={args.temperature} "
        f"devices={jax.devices()}")

  prefill = jax.jit(kv_cache.prefill, static_argnames=("cfg", "compute_dtype"))

  def prefill_flops(rows: int) -> float:
    return xla_flops(prefill.lower(params, cfg, jnp.tile(tokens, (rows // args.batch, 1)),
                                jnp.tile(valid, (rows // args.batch, 1)),
                                compute_dtype=dtype).compile())

  shared_prefill_flops = prefill_flops(args.batch)
  header = (f"{'N':>4} {'rows':>5} {'tokens/s':>10} {'call s':>8} {'compile s':>9} "
            f"{'L=1 shared s':>12} {'L=1 per-sample s':>16} {'prefill GFLOP shared':>20} "
            f"{'per-sample':>10}")
  print(header)
  print("-" * len(header))
  for n in [int(x) for x in args.num_samples.split(",")]:
    settings = sampler.SamplingParams(num_samples=n, max_new_tokens=args.max_new_tokens,
                                      temperature=args.temperature, eos_id=None)
    run = lambda s=settings: jax.block_until_ready(sampler.sample(
        params, cfg, s, tokens, valid, ids, rng, 0, compute_dtype=dtype))
    first, seconds = timed(run, args.repeats)
    generated = args.batch * n * args.max_new_tokens
    one_token = {}
    for per_sample in (False, True):
      short = sampler.SamplingParams(num_samples=n, max_new_tokens=1,
                                     temperature=args.temperature, eos_id=None,
                                     prefill_per_sample=per_sample)
      one_token[per_sample] = timed(
          lambda s=short: jax.block_until_ready(sampler.sample(
              params, cfg, s, tokens, valid, ids, rng, 0, compute_dtype=dtype)),
          args.repeats)[1]
    print(f"{n:>4} {args.batch * n:>5} {generated / seconds:>10.1f} {seconds:>8.3f} "
          f"{first - seconds:>9.2f} {one_token[False]:>12.4f} {one_token[True]:>16.4f} "
          f"{shared_prefill_flops / 1e9:>20.3f} {prefill_flops(args.batch * n) / 1e9:>10.3f}")


if __name__ == "__main__":
  main()
