"""The byte-level tokenizer of the tiny-byte model: any text round-trips."""

from bonjax.models.config import get_preset
from bonjax.tokenizers.byte import ByteTokenizer


def test_round_trip_and_stop_at_eos():
  tok = ByteTokenizer()
  text = "def f(x):\n  return x ≤ 3  # ➞ café"
  ids = tok.encode(text)
  assert len(ids) == len(text.encode("utf-8")) and min(ids) >= 3 and max(ids) < tok.vocab_size
  assert tok.decode(ids) == text
  assert tok.decode(tok.encode("ab") + [tok.eos_id] + tok.encode("cd")) == "ab"
  assert tok.decode([tok.pad_id, tok.bos_id, *tok.encode("x")]) == "x"
  assert tok.decode(tok.encode("é")[:1]) == "\ufffd"  # A cut multi-byte character.
  assert tok.vocab_size == 259 <= get_preset("tiny-byte").vocab_size
