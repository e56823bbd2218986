"""GGUF-embedded vocabularies -> tokenizers: hand-worked encodings of tiny vocabularies."""

from __future__ import annotations

import os
import sys

import pytest

pytest.importorskip("tokenizers")

sys.path.insert(0, os.path.dirname(__file__))
import gguf_vocab_fixtures as fx  # pylint: disable=g-import-not-at-top,wrong-import-position

from bonjax.tokenizers import gguf_vocab  # pylint: disable=g-import-not-at-top,wrong-import-position
from bonjax.tokenizers.base import Tokenizer  # pylint: disable=g-import-not-at-top,wrong-import-position


def _ids(meta: dict, *tokens: str) -> list[int]:
  vocab = meta["tokenizer.ggml.tokens"]
  return [vocab.index(t) for t in tokens]


# --------------------------------------------------------------------------------------------
# Byte-level BPE ("gpt2").
# --------------------------------------------------------------------------------------------


def test_byte_level_merges_in_order_and_digits_split_one_by_one():
  meta = fx.byte_level_metadata("smollm")
  tok = gguf_vocab.tokenizer_from_gguf_metadata(meta)
  assert isinstance(tok, Tokenizer)
  # "the" -> t h e -> th e -> the; " the" -> Ġ the -> Ġthe; "n" has no merge.
  assert tok.encode("the then") == _ids(meta, "the", "\u0120the", "n")
  # "smollm" splits every digit before BPE, so the merge "1 2" never applies.
  assert tok.encode("123") == _ids(meta, "1", "2", "3")


def test_default_byte_level_pre_tokenizer_keeps_digit_runs():
  meta = fx.byte_level_metadata("default")
  tok = gguf_vocab.tokenizer_from_gguf_metadata(meta)
  assert tok.encode("123") == _ids(meta, "12", "3")


def test_byte_level_special_tokens_ids_and_decode():
  meta = fx.byte_level_metadata()
  tok = gguf_vocab.tokenizer_from_gguf_metadata(meta)
  assert (tok.vocab_size, tok.bos_id, tok.bos_token_id, tok.eos_id, tok.pad_id) == (
      len(meta["tokenizer.ggml.tokens"]), None, 1, 2, 2)
  ids = tok.encode("<|im_start|>user\nthe")
  assert ids == [1] + _ids(meta, "u", "s", "e", "r", "\u010a", "the")
  # Decoding drops special tokens and stops at the first EOS; non-ASCII survives byte-level.
  assert tok.decode(ids + [2] + _ids(meta, "t")) == "user\nthe"
  assert tok.decode(tok.encode("café ∑ 12")) == "café ∑ 12"


def test_chat_prompt_renders_the_file_template():
  tok = gguf_vocab.tokenizer_from_gguf_metadata(fx.byte_level_metadata())
  prompt = tok.chat_prompt("2+3=?", system="Be brief.")
  assert prompt == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+3=?<|im_end|>\n"
                    "<|im_start|>assistant\n")
  assert tok.encode(prompt)[0] == 1 and tok.encode(prompt).count(2) == 2


def test_unknown_pre_tokenizer_is_named():
  with pytest.raises(ValueError, match="'qwen9'.*smollm"):
    gguf_vocab.tokenizer_from_gguf_metadata(fx.byte_level_metadata("qwen9"))


def test_unknown_tokenizer_model_is_named():
  meta = {**fx.byte_level_metadata(), "tokenizer.ggml.model": "rwkv"}
  with pytest.raises(ValueError, match="'rwkv'.*gpt2"):
    gguf_vocab.tokenizer_from_gguf_metadata(meta)


# --------------------------------------------------------------------------------------------
# SentencePiece BPE ("llama").
# --------------------------------------------------------------------------------------------


def test_sentencepiece_merges_rank_by_merged_piece_score():
  meta = fx.sentencepiece_metadata()
  merges = gguf_vocab.sentencepiece_merges(meta["tokenizer.ggml.tokens"],
                                           meta["tokenizer.ggml.token_type"],
                                           meta["tokenizer.ggml.scores"])
  assert merges == [("\u2581", "t"), ("h", "e"), ("\u2581t", "he"), ("t", "h")]


def test_sentencepiece_encoding_follows_scores():
  meta = fx.sentencepiece_metadata()
  tok = gguf_vocab.tokenizer_from_gguf_metadata(meta)
  # " the": ▁ t h e -> ▁t h e -> ▁t he -> ▁the (the "th" merge scores lower than "▁t").
  assert tok.encode(" the") == _ids(meta, "\u2581the")
  # "the" at the start (no space prefix): t h e -> t he; "the" itself is not a piece.
  assert tok.encode("the") == _ids(meta, "t", "he")
  # "then b": ▁ between words; "n" and "b" are pieces.
  assert tok.encode("the b") == _ids(meta, "t", "he", "\u2581", "b")


def test_sentencepiece_byte_fallback_user_tokens_and_round_trip():
  meta = fx.sentencepiece_metadata()
  tok = gguf_vocab.tokenizer_from_gguf_metadata(meta)
  # "a" is no piece: byte fallback <0x61>; "\n\n" is a user-defined token, matched whole.
  assert tok.encode("a\n\nb") == _ids(meta, "<0x61>", "\n\n", "b")
  assert tok.encode("é") == _ids(meta, "<0xC3>", "<0xA9>")
  for text in ["the b", " the then\n\na é", "x  y"]:
    assert tok.decode(tok.encode(text)) == text


def test_sentencepiece_ids_bos_and_plain_prompt():
  tok = gguf_vocab.tokenizer_from_gguf_metadata(fx.sentencepiece_metadata())
  assert (tok.bos_id, tok.eos_id, tok.pad_id) == (2, 1, 0)
  assert tok.encode("<bos>the")[0] == 2
  # The tokenizer's own post-processor adds BOS, as the file asks (used by transformers).
  assert tok.tokenizer.encode("the", add_special_tokens=True).ids[0] == 2
  assert tok.decode([2] + tok.encode("the b") + [1, 5]) == "the b"
  # No chat template: prompts are plain text.
  assert tok.chat_template is None and tok.chat_prompt("2+3=") == "2+3="
