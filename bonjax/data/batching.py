"""Tokenisation into static-shape batches: left-padded prompts, right-padded completions.

Lengths are rounded up to configured buckets so a run compiles once per bucket, not once per
batch. Prompts are left-padded so every row's next token sits at the same column, which lets
the sampler decode all rows in lockstep.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from bonjax.tokenizers.base import Tokenizer


def bucket_length(length: int, buckets: Sequence[int], what: str = "length") -> int:
  """Smallest bucket that holds `length`.

  Args:
    length: tokens needed.
    buckets: allowed padded lengths (any order).
    what: config field name used in the error message.

  Raises:
    ValueError: when `length` exceeds every bucket, naming the field to change.
  """
  fitting = [b for b in sorted(buckets) if b >= length]
  if not fitting:
    raise ValueError(f"{what}: a sequence of {length} tokens exceeds the largest bucket "
                     f"{max(buckets)}; add a larger bucket to {what}")
  return fitting[0]


def encode_prompt(tokenizer: Tokenizer, text: str) -> list[int]:
  """Prompt ids with the tokenizer's BOS prepended when it has one."""
  ids = tokenizer.encode(text)
  return ids if tokenizer.bos_id is None else [tokenizer.bos_id] + ids


def left_pad(rows: Sequence[Sequence[int]], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Left-pads id rows to `length`.

  Returns:
    (tokens int32 [B, length], valid bool [B, length]).
  """
  tokens = np.full((len(rows), length), pad_id, dtype=np.int32)
  valid = np.zeros((len(rows), length), dtype=bool)
  for i, row in enumerate(rows):
    if row:
      tokens[i, length - len(row):] = row
      valid[i, length - len(row):] = True
  return tokens, valid


def right_pad(rows: Sequence[Sequence[int]], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Right-pads id rows to `length`.

  Returns:
    (tokens int32 [B, length], valid bool [B, length]).
  """
  tokens = np.full((len(rows), length), pad_id, dtype=np.int32)
  valid = np.zeros((len(rows), length), dtype=bool)
  for i, row in enumerate(rows):
    tokens[i, :len(row)] = row
    valid[i, :len(row)] = True
  return tokens, valid


def encode_prompts(tokenizer: Tokenizer, texts: Sequence[str],
                   prompt_buckets: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
  """Tokenises prompts into a left-padded batch whose width is a prompt bucket.

  Returns:
    (tokens int32 [B, P], valid bool [B, P]).
  """
  rows = [encode_prompt(tokenizer, t) for t in texts]
  width = bucket_length(max(len(r) for r in rows), prompt_buckets, "lengths.prompt_buckets")
  return left_pad(rows, width, tokenizer.pad_id)


def encode_supervised(tokenizer: Tokenizer, prompts: Sequence[str], completions: Sequence[str],
                      prompt_buckets: Sequence[int],
                      completion_buckets: Sequence[int]) -> dict[str, np.ndarray]:
  """Builds a teacher-forcing batch: [left-padded prompt | completion + EOS | right pad].

  Returns:
    dict with `tokens` int32 [B, P+L], `valid` bool [B, P+L] (real tokens) and `target_mask`
    bool [B, P+L] (completion tokens, EOS included: the tokens the loss scores).
  """
  prompt_tokens, prompt_valid = encode_prompts(tokenizer, prompts, prompt_buckets)
  answers = [tokenizer.encode(c) + [tokenizer.eos_id] for c in completions]
  width = bucket_length(max(len(a) for a in answers), completion_buckets,
                        "lengths.completion_buckets")
  completion_tokens, completion_valid = right_pad(answers, width, tokenizer.pad_id)
  return {
      "tokens": np.concatenate([prompt_tokens, completion_tokens], axis=1),
      "valid": np.concatenate([prompt_valid, completion_valid], axis=1),
      "target_mask": np.concatenate([np.zeros_like(prompt_valid), completion_valid], axis=1),
  }


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


def padded_chunks(size: int, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Row indices of `size` rows in fixed-size chunks, so that a jitted call on each chunk
  compiles once however many rows come: the last chunk is padded by repeating its first row.

  Args:
    size: number of rows.
    chunk: rows per call.

  Yields:
    (rows, padded): the chunk's own row indices [<= chunk], and those indices padded to
    [chunk]; keep the first `len(rows)` results of a call on `padded`.
  """
  for start in range(0, size, chunk):
    rows = np.arange(start, min(start + chunk, size))
    yield rows, np.concatenate([rows, np.full(chunk - len(rows), rows[0])])
