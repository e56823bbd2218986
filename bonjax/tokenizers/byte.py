"""Byte-level tokenizer: any text, one id per UTF-8 byte; for the tiny model on real text
(HumanEval, JSONL tasks) in tests and CPU smoke runs (model.preset="tiny-byte")."""

from __future__ import annotations

from typing import Sequence


class ByteTokenizer:
  """Ids 0..2 are pad, BOS and EOS; byte b is id b + 3 (vocab_size 259)."""

  pad_id = 0
  bos_id = 1
  eos_id = 2
  _RESERVED = 3
  vocab_size = 256 + _RESERVED

  def encode(self, text: str) -> list[int]:
    return [b + self._RESERVED for b in text.encode("utf-8")]

  def decode(self, ids: Sequence[int]) -> str:
    """Text of the bytes before the first EOS (pad/BOS dropped; broken UTF-8 replaced)."""
    out = bytearray()
    for i in ids:
      i = int(i)
      if i == self.eos_id:
        break
      if self._RESERVED <= i < self.vocab_size:
        out.append(i - self._RESERVED)
    return out.decode("utf-8", errors="replace")

  def chat_prompt(self, user_message: str, system: str | None = None) -> str:
    """A plain-text stand-in for a chat template (the byte model has none)."""
    head = f"System: {system}\n" if system else ""
    return f"{head}User: {user_message}\nAssistant: "
