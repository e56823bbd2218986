"""The vocabulary embedded in a GGUF file -> `HFTokenizer` (a `tokenizers.Tokenizer`).

GGUF files carry their tokenizer as metadata: `tokenizer.ggml.model` names the algorithm,
`tokens` / `token_type` list the vocabulary, and either `merges` (byte-level BPE, "gpt2") or
`scores` (SentencePiece BPE, "llama") give the merge order. Both become a `tokenizers` BPE
model:

- "gpt2": GPT-2 byte-level BPE with the file's merges; `tokenizer.ggml.pre` selects the
  pre-tokenizer (e.g. "smollm" splits digits one by one before the byte-level split).
- "llama": SentencePiece BPE. SentencePiece merges the adjacent pair whose merged piece has
  the highest score; the equivalent ranked merge list holds every split of every normal piece
  into two pieces of the vocabulary, ordered by the merged piece's score. Spaces become "▁",
  and characters outside the vocabulary fall back to byte tokens "<0xXX>".

Control tokens (type 3) become special added tokens and user-defined tokens (type 4) plain
added tokens, so both are matched whole before the BPE model runs, as llama.cpp does.
"""

from __future__ import annotations

from typing import Any, Callable

from bonjax.tokenizers.hf import HFTokenizer

# GGUF token types (llama.cpp's llama_token_type).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

_KEY = "tokenizer.ggml."


def _digits_then_byte_level():
  from tokenizers import pre_tokenizers  # pylint: disable=g-import-not-at-top

  return pre_tokenizers.Sequence([
      pre_tokenizers.Digits(individual_digits=True),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
  ])


def _byte_level():
  from tokenizers import pre_tokenizers  # pylint: disable=g-import-not-at-top

  return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


# `tokenizer.ggml.pre` of byte-level BPE vocabularies -> pre-tokenizer factory. "smollm" is
# llama.cpp's name for the StarCoder-style split: every digit alone, then GPT-2's regex.
BYTE_LEVEL_PRE_TOKENIZERS: dict[str, Callable[[], Any]] = {
    "smollm": _digits_then_byte_level,
    "starcoder": _digits_then_byte_level,
    "gpt2": _byte_level,
    "default": _byte_level,
}


def _vocab(tokens: list[str]) -> dict[str, int]:
  vocab: dict[str, int] = {}
  for i, token in enumerate(tokens):
    vocab.setdefault(token, i)  # a repeated string keeps its first id, as llama.cpp does
  return vocab


def _add_listed_tokens(tokenizer, tokens: list[str], types: list[int]) -> None:
  from tokenizers import AddedToken  # pylint: disable=g-import-not-at-top

  special = [AddedToken(t, special=True, normalized=False)
             for t, ty in zip(tokens, types) if ty in (CONTROL, UNUSED, UNKNOWN)]
  plain = [AddedToken(t, special=False, normalized=False)
           for t, ty in zip(tokens, types) if ty == USER_DEFINED]
  # Registering strings already in the vocabulary keeps their ids.
  tokenizer.add_special_tokens(special)
  tokenizer.add_tokens(plain)


def _bos_post_processor(meta: dict, tokens: list[str]):
  """Prepends BOS in `encode(..., add_special_tokens=True)` when the file asks for it."""
  from tokenizers import processors  # pylint: disable=g-import-not-at-top

  bos = meta.get(_KEY + "bos_token_id")
  if bos is None or not meta.get(_KEY + "add_bos_token", False):
    return None
  return processors.TemplateProcessing(single=f"{tokens[bos]} $A", pair=f"{tokens[bos]} $A $B",
                                       special_tokens=[(tokens[bos], bos)])


def byte_level_bpe(meta: dict):
  """A `tokenizers.Tokenizer` for a "gpt2" (byte-level BPE) GGUF vocabulary."""
  from tokenizers import Tokenizer, decoders, models  # pylint: disable=g-import-not-at-top

  tokens = list(meta[_KEY + "tokens"])
  merges = [tuple(m.split(" ", 1)) for m in meta[_KEY + "merges"]]
  pre = meta.get(_KEY + "pre", "default")
  if pre not in BYTE_LEVEL_PRE_TOKENIZERS:
    raise ValueError(f"tokenizer.ggml.pre={pre!r}: unknown byte-level pre-tokenizer; known: "
                     f"{sorted(BYTE_LEVEL_PRE_TOKENIZERS)}")
  tokenizer = Tokenizer(models.BPE(vocab=_vocab(tokens), merges=merges, fuse_unk=False))
  tokenizer.pre_tokenizer = BYTE_LEVEL_PRE_TOKENIZERS[pre]()
  tokenizer.decoder = decoders.ByteLevel()
  return tokenizer


def sentencepiece_merges(tokens: list[str], types: list[int],
                         scores: list[float]) -> list[tuple[str, str]]:
  """Ranked BPE merges equivalent to SentencePiece's score-driven merging.

  Every normal piece that splits into two vocabulary pieces yields a merge; merges producing
  higher-scored pieces rank first (ties: lower id of the merged piece, then of its halves).

  Args:
    tokens: vocabulary strings.
    types: GGUF token types.
    scores: SentencePiece scores (log-probability-like; higher merges first).
  """
  vocab = _vocab(tokens)
  ranked = []
  for piece_id, (piece, kind) in enumerate(zip(tokens, types)):
    if kind != NORMAL or len(piece) < 2:
      continue
    for cut in range(1, len(piece)):
      left, right = vocab.get(piece[:cut]), vocab.get(piece[cut:])
      if left is not None and right is not None:
        ranked.append((-scores[piece_id], piece_id, left, right))
  ranked.sort()
  return [(tokens[left], tokens[right]) for _, _, left, right in ranked]


def sentencepiece_bpe(meta: dict):
  """A `tokenizers.Tokenizer` for a "llama" (SentencePiece BPE with scores) GGUF vocabulary."""
  from tokenizers import Tokenizer, decoders, models, normalizers  # pylint: disable=g-import-not-at-top

  tokens = list(meta[_KEY + "tokens"])
  types = list(meta[_KEY + "token_type"])
  scores = list(meta[_KEY + "scores"])
  unk = meta.get(_KEY + "unknown_token_id")
  bpe = models.BPE(vocab=_vocab(tokens), merges=sentencepiece_merges(tokens, types, scores),
                   unk_token=None if unk is None else tokens[unk], byte_fallback=True,
                   fuse_unk=True)
  tokenizer = Tokenizer(bpe)
  steps = [normalizers.Replace(" ", "\u2581")]
  decode_steps = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
  if meta.get(_KEY + "add_space_prefix", False):
    steps.insert(0, normalizers.Prepend("\u2581"))
    decode_steps.append(decoders.Strip(" ", 1, 0))
  tokenizer.normalizer = normalizers.Sequence(steps)
  tokenizer.decoder = decoders.Sequence(decode_steps)
  return tokenizer


# `tokenizer.ggml.model` -> builder.
GGUF_TOKENIZER_MODELS: dict[str, Callable[[dict], Any]] = {
    "gpt2": byte_level_bpe,
    "llama": sentencepiece_bpe,
}


def tokenizer_from_gguf_metadata(meta: dict) -> HFTokenizer:
  """Builds the model's tokenizer from GGUF metadata.

  Args:
    meta: GGUF key -> value (plain Python values), at least `tokenizer.ggml.model`, `tokens`,
      `token_type`, `eos_token_id`, and `merges` or `scores` as the model needs.

  Returns:
    HFTokenizer with BOS only when `tokenizer.ggml.add_bos_token` is true, the file's chat
    template (None when it has none), EOS from the file and pad from the file (EOS without).

  Raises:
    ValueError: an unknown tokenizer model or pre-tokenizer.
  """
  model = meta.get(_KEY + "model")
  if model not in GGUF_TOKENIZER_MODELS:
    raise ValueError(f"tokenizer.ggml.model={model!r}: unsupported; supported: "
                     f"{sorted(GGUF_TOKENIZER_MODELS)}")
  tokens = list(meta[_KEY + "tokens"])
  tokenizer = GGUF_TOKENIZER_MODELS[model](meta)
  _add_listed_tokens(tokenizer, tokens, list(meta[_KEY + "token_type"]))
  post = _bos_post_processor(meta, tokens)
  if post is not None:
    tokenizer.post_processor = post
  eos = meta[_KEY + "eos_token_id"]
  bos = meta.get(_KEY + "bos_token_id")
  pad = meta.get(_KEY + "padding_token_id", eos)
  add_bos = bool(meta.get(_KEY + "add_bos_token", False))
  return HFTokenizer(tokenizer, eos_id=eos, pad_id=pad, bos_id=bos if add_bos else None,
                     chat_template=meta.get("tokenizer.chat_template"), bos_token_id=bos)
