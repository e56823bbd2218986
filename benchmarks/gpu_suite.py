"""The accelerator benchmark tables of issue 19: train-step MFU and sampler throughput.

Usage (one GPU; `benchmarks/gpu_suite.sh` runs this after the test subset):

  JAX_PLATFORMS=cuda python benchmarks/gpu_suite.py --out=/tmp/gpu_suite.json
  python benchmarks/gpu_suite.py --tiny --out=/tmp/cpu_smoke.json     # CPU smoke sizes

Random weights of the repo's presets (no downloads). The train table is one SFT step (AdamW,
full fine-tune, or LoRA) through `pretrained_throughput.bench_train_step`, with the memory knobs
a user gets by default: `bonjax.training.memory_budget.plan_run` plans the run on this device
and picks model.remat ("auto") and model.logits_chunk (1024), exactly as a training run
would; the plan's estimate is recorded beside the measurement. The sampler table is one prompt
x N samples x L new tokens (no stop token) through `bonjax.sampling.sampler.sample`, with two
bounds: the weight-read bound (every decoding step reads all weights once: N x measured memory
bandwidth / weight bytes) and `pretrained_throughput.decode_matmul_bound`. Every case records
its settings; a case that fails (e.g. out of memory) records the error and the suite goes on.
The JSON has the device, the versions and every setting.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from typing import Any, Callable

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_HERE, os.path.dirname(_HERE)]  # timing.py and siblings; this checkout's bonjax

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import pretrained_throughput as pt  # noqa: E402
from bonjax.models import transformer  # noqa: E402
from bonjax.parallel import memory  # noqa: E402
from bonjax.sampling import sampler  # noqa: E402
from bonjax.training import memory_budget  # noqa: E402
from timing import timed  # noqa: E402

# ("train", preset, B, T, LoRA rank) and ("sampler", preset, N, L): the tables, most
# important first (the JSON is rewritten after every case, so a time limit keeps what ran).
CASES = [("train", "gemma2-2b", 8, 1024, 0), ("sampler", "gemma2-2b", 16, 128),
         ("train", "smollm2-135m", 16, 1024, 0), ("sampler", "gemma2-2b", 256, 128),
         ("sampler", "smollm2-135m", 16, 128), ("sampler", "smollm2-135m", 256, 128),
         ("train", "gemma2-2b", 1, 1024, 0), ("train", "gemma2-2b", 8, 1024, 16)]
PROMPT_LEN = 32

# CPU smoke sizes: the same code paths in seconds.
TINY_CASES = [("train", "tiny", 4, 32, 0), ("train", "tiny", 4, 32, 4), ("sampler", "tiny", 4, 8)]


def device_info() -> dict[str, Any]:
  """Device, backend and versions."""
  import jaxlib
  device = jax.devices()[0]
  return {"backend": jax.default_backend(), "device_kind": device.device_kind,
          "device_count": jax.device_count(), "device_memory_bytes":
          memory.device_memory_bytes(device), "jax": jax.__version__,
          "jaxlib": jaxlib.__version__, "python": platform.python_version(),
          "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def run_config(preset: str, batch: int, seq_len: int, dtype: str, lora_rank: int):
  """The quickstart config turned into an SFT run of `preset` on B x T tokens."""
  from experiments import quickstart
  config = quickstart.get_config()
  config.model.preset, config.model.compute_dtype = preset, dtype
  config.model.lora_rank = lora_rank
  config.train.batch_size = batch
  config.lengths.prompt_buckets = (seq_len // 2,)
  config.lengths.completion_buckets = (seq_len - seq_len // 2,)
  config.eval.prompt_batch_size = batch
  return config


def memory_bandwidth(size_bytes: int = 1 << 30, repeats: int = 5) -> float:
  """Measured bytes/s of a jitted elementwise pass over `size_bytes` (read + write)."""
  x = jnp.ones((size_bytes // 4,), jnp.float32)
  bump = jax.jit(lambda a: a + 1.0)
  _, seconds = timed(lambda: jax.block_until_ready(bump(x)), repeats)
  return 2 * size_bytes / seconds


def train_case(preset: str, batch: int, seq_len: int, lora_rank: int, dtype: str, peak: float,
               repeats: int) -> dict[str, Any]:
  """One row of the train table: planned knobs, tokens/s, MFU, plan vs device memory."""
  config = run_config(preset, batch, seq_len, dtype, lora_rank)
  budget = memory_budget.plan_run(config, (1, 1, 1), check=True)
  cfg = budget.model_cfg
  row = {"preset": preset, "batch": batch, "seq_len": seq_len, "dtype": dtype,
         "lora_rank": lora_rank, "remat": cfg.remat, "logits_chunk": cfg.logits_chunk,
         "planned_train_peak_bytes": budget.plan.train_peak}
  params = transformer.init_params(cfg, jax.random.key(0))
  row.update(pt.bench_train_step(cfg, params, dtype, batch, seq_len, peak, repeats))
  if lora_rank:  # `pt.train_flops_per_token`: the base weights get no weight gradient.
    row["note"] = "model FLOPs of a LoRA step: 4 x base params + 6 x adapters per token"
  return row


def sampler_case(preset: str, n: int, new_tokens: int, dtype: str, bandwidth: float,
                 repeats: int) -> dict[str, Any]:
  """One row of the sampler table: tokens/s against the weight-read and matmul bounds."""
  from bonjax.models.config import get_preset
  cfg = get_preset(preset)
  params = transformer.init_params(cfg, jax.random.key(0))
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(3, cfg.vocab_size, (1, PROMPT_LEN)), jnp.int32)
  valid = jnp.ones((1, PROMPT_LEN), bool)
  settings = sampler.SamplingParams(num_samples=n, max_new_tokens=new_tokens, temperature=1.0,
                                    eos_id=None)
  compute_dtype = jnp.dtype(dtype)
  first, seconds = timed(lambda: jax.block_until_ready(sampler.sample(
      params, cfg, settings, tokens, valid, jnp.zeros((1,), jnp.int32), jax.random.key(1), 0,
      compute_dtype=compute_dtype).tokens), repeats)
  tok_s = n * new_tokens / seconds
  weight_bytes = cfg.num_params() * compute_dtype.itemsize
  read_bound = n * bandwidth / weight_bytes
  matmul_bound = pt.decode_matmul_bound(cfg, n, dtype, max(repeats, 2))
  return {"preset": preset, "N": n, "L": new_tokens, "prompt_len": PROMPT_LEN, "dtype": dtype,
          "tokens_s": tok_s, "call_s": seconds, "compile_s": first - seconds,
          "weight_read_bound_tok_s": read_bound,
          "fraction_of_weight_read_bound": tok_s / read_bound,
          "matmul_bound_tok_s": matmul_bound}


def _guarded(fn: Callable[[], dict], settings: dict) -> dict:
  """fn()'s row, or the settings with the error (the suite goes on)."""
  start = time.perf_counter()
  try:
    row = fn()
  except Exception as e:  # noqa: BLE001  Out of memory, a plan that does not fit, ...
    row = dict(settings, error=f"{type(e).__name__}: {str(e)[:2000]}",
               traceback=traceback.format_exc(limit=3)[-2000:])
  row["wall_s"] = time.perf_counter() - start
  print(json.dumps(row), flush=True)
  return row


def run_suite(cases, dtype: str, repeats: int, out: str | None = None) -> dict[str, Any]:
  """Runs the cases in order; returns the JSON-ready results (also written to `out` after
  every case)."""
  big = jax.default_backend() == "gpu"  # CPU: smoke sizes
  peak = pt.matmul_peak(jnp.dtype(dtype), size=8192 if big else 512)
  bandwidth = memory_bandwidth(1 << 30 if big else 1 << 24)
  results = {"device": device_info(), "settings": {
      "dtype": dtype, "repeats": repeats, "matmul_peak_flops": peak,
      "memory_bandwidth_bytes_s": bandwidth, "cases": [list(c) for c in cases],
      "prompt_len": PROMPT_LEN}, "train": [], "sampler": []}
  for kind, preset, *sizes in cases:
    if kind == "train":
      batch, seq_len, rank = sizes
      settings = {"preset": preset, "batch": batch, "seq_len": seq_len, "lora_rank": rank}
      run = lambda: train_case(preset, batch, seq_len, rank, dtype, peak, repeats)
    else:
      n, length = sizes
      settings = {"preset": preset, "N": n, "L": length}
      run = lambda: sampler_case(preset, n, length, dtype, bandwidth, repeats)
    results[kind].append(_guarded(run, settings))
    if out:
      with open(out, "w") as f:
        json.dump(results, f, indent=1)
  return results


def main(argv=None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="gpu_suite.json")
  parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--tiny", action="store_true", help="CPU smoke sizes (tiny preset)")
  args = parser.parse_args(argv)
  results = run_suite(TINY_CASES if args.tiny else CASES, args.dtype, args.repeats, args.out)
  print(f"wrote {args.out}")
  return results


if __name__ == "__main__":
  main()
