"""The Tokenizer protocol every vocabulary (character, HF, GGUF-embedded) implements."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable


@runtime_checkable
class Tokenizer(Protocol):
  """Text <-> token ids.

  Attributes:
    vocab_size: number of ids; every id returned by `encode` is below it.
    pad_id: id used for padding (never produced by `encode`).
    bos_id: id prepended to prompts, or None when the model uses none.
    eos_id: id that ends a completion; the sampler stops a sample at it.
  """

  vocab_size: int
  pad_id: int
  bos_id: int | None
  eos_id: int

  def encode(self, text: str) -> list[int]:
    """Returns the ids of `text` (no BOS/EOS added)."""
    ...

  def decode(self, ids: Sequence[int]) -> str:
    """Returns the text of `ids`, dropping pad/BOS and stopping at the first EOS."""
    ...
