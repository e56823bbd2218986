"""Character-level tokenizer for the built-in synthetic tasks."""

from __future__ import annotations

from typing import Sequence

# Every character the arithmetic task writes; ids 0..2 are reserved for pad/BOS/EOS.
ARITHMETIC_ALPHABET = "0123456789+-*=() QA:\n"


class CharTokenizer:
  """One id per character of a fixed alphabet, plus pad (0), BOS (1) and EOS (2).

  Args:
    alphabet: the characters, in id order starting at 3; must not repeat.
    vocab_size: total ids; at least len(alphabet) + 3 (extra ids are never produced, which
      lets a model keep a round vocabulary size).

  Raises:
    ValueError: repeated characters or a vocab_size too small for the alphabet.
  """

  pad_id = 0
  bos_id = 1
  eos_id = 2
  _RESERVED = 3

  def __init__(self, alphabet: str = ARITHMETIC_ALPHABET, vocab_size: int | None = None):
    if len(set(alphabet)) != len(alphabet):
      raise ValueError(f"alphabet {alphabet!r} repeats a character")
    needed = len(alphabet) + self._RESERVED
    self.vocab_size = needed if vocab_size is None else vocab_size
    if self.vocab_size < needed:
      raise ValueError(f"vocab_size={self.vocab_size}: must be >= {needed} for this alphabet")
    self.alphabet = alphabet
    self._ids = {c: i + self._RESERVED for i, c in enumerate(alphabet)}

  def encode(self, text: str) -> list[int]:
    try:
      return [self._ids[c] for c in text]
    except KeyError as e:
      raise ValueError(f"character {e.args[0]!r} is not in the alphabet {self.alphabet!r}") from None

  def decode(self, ids: Sequence[int]) -> str:
    chars = []
    for i in ids:
      i = int(i)
      if i == self.eos_id:
        break
      if self._RESERVED <= i < self._RESERVED + len(self.alphabet):
        chars.append(self.alphabet[i - self._RESERVED])
    return "".join(chars)
