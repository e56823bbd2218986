"""Tokenizer registry: config `tokenizer.name` -> factory.

A name resolves to a built-in tokenizer or to a pretrained model's own (read with its weights),
so the registry sits with the pretrained checkpoints, above bonjax.tokenizers: tokenizers
import nothing of bonjax, checkpoints import tokenizers and models.
"""

from __future__ import annotations

from typing import Callable

import ml_collections

from bonjax.checkpoints import pretrained
from bonjax.tokenizers.base import Tokenizer
from bonjax.tokenizers.byte import ByteTokenizer
from bonjax.tokenizers.char import CharTokenizer

TokenizerFactory = Callable[[ml_collections.ConfigDict], Tokenizer]

def _pretrained(config: ml_collections.ConfigDict) -> Tokenizer:
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
