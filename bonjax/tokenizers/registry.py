"""Tokenizer registry: config `tokenizer.name` -> factory."""

from __future__ import annotations

from typing import Callable

import ml_collections

from bonjax.tokenizers.base import Tokenizer
from bonjax.tokenizers.byte import ByteTokenizer
from bonjax.tokenizers.char import CharTokenizer

TokenizerFactory = Callable[[ml_collections.ConfigDict], Tokenizer]

def _pretrained(config: ml_collections.ConfigDict) -> Tokenizer:
  # Imported on use: the checkpoints package depends on tokenizers, not the other way round.
  from bonjax.checkpoints import pretrained
  return pretrained.load_pretrained_tokenizer(config.tokenizer.model)


TOKENIZERS: dict[str, TokenizerFactory] = {
    "char": lambda config: CharTokenizer(),
    "byte": lambda config: ByteTokenizer(),  # any text, with model.preset="tiny-byte"
    "pretrained": _pretrained,  # tokenizer.model: a name of bonjax.checkpoints.pretrained
}


def build_tokenizer(config: ml_collections.ConfigDict) -> Tokenizer:
  """Builds the tokenizer named by `config.tokenizer.name`.

  Raises:
    ValueError: unknown name, listing the registered ones.
  """
  name = config.tokenizer.name
  if name not in TOKENIZERS:
    raise ValueError(f"tokenizer.name={name!r}: unknown tokenizer; known: {sorted(TOKENIZERS)}")
  return TOKENIZERS[name](config)
