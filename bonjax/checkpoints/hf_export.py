"""Params (e.g. fine-tuned) -> Hugging Face checkpoint directory that `transformers` loads.

  save_hf_checkpoint("/tmp/out", cfg, params, tokenizer)
  # transformers.AutoModelForCausalLM.from_pretrained("/tmp/out") -> same logits

Writes `config.json` (the HF architecture is chosen by `cfg.family`, see
`hf_layout.EXPORT_ARCHITECTURE`), `model.safetensors` (float32 by default), a
`generation_config.json` with the token ids (every stop id as `eos_token_id`), and the
tokenizer files when a tokenizer is given (`hf_tokenizer_for` turns the character and byte
tokenizers of the built-in tasks into equivalent `tokenizers` ones).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from bonjax.checkpoints import hf_layout
from bonjax.models.config import ModelConfig

_DTYPES = {"float32": np.float32, "float16": np.float16}


def save_hf_checkpoint(directory: str, cfg: ModelConfig, params: dict, tokenizer: Any = None, *,
                       dtype: str = "float32") -> str:
  """Writes an HF checkpoint directory.

  Args:
    directory: created if missing; existing files of the same names are replaced.
    cfg: model configuration.
    params: params pytree (jax or numpy arrays).
    tokenizer: an object with `save(directory)` (e.g. HFTokenizer), or None.
    dtype: "float32" or "float16" for the saved tensors.

  Returns:
    The HF `model_type` written.

  Raises:
    ValueError: `cfg` uses a switch the target HF architecture cannot express, or an unknown
      dtype.
  """
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top

  if dtype not in _DTYPES:
    raise ValueError(f"dtype={dtype!r}: expected one of {sorted(_DTYPES)}")
  arch = hf_layout.architecture_for_config(cfg)
  config = hf_layout.hf_config_dict(cfg, arch)
  config["torch_dtype"] = dtype
  state = hf_layout.hf_state_from_params(cfg, params, arch)
  if tokenizer is not None:
    config.update(_token_ids(tokenizer))
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
  generation = {k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")
                if config.get(k) is not None}
  with open(os.path.join(directory, "generation_config.json"), "w") as f:
    json.dump(generation, f, indent=2)
  save_file({k: v.astype(_DTYPES[dtype]) for k, v in state.items()},
            os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
  if tokenizer is not None:
    tokenizer.save(directory)
  return arch.model_type


def _token_ids(tokenizer: Any) -> dict[str, Any]:
  bos = getattr(tokenizer, "bos_token_id", tokenizer.bos_id)
  stops = list(getattr(tokenizer, "stop_ids", ()) or [tokenizer.eos_id])
  return {"bos_token_id": bos, "eos_token_id": stops[0] if len(stops) == 1 else stops,
          "pad_token_id": tokenizer.pad_id}


def _char_tokenizer_to_hf(tokenizer: Any) -> Any:
  """The character tokenizer as an HFTokenizer with the same ids: one word-level token per
  character, specials <pad>, <s>, </s> at its reserved ids."""
  import tokenizers  # pylint: disable=g-import-not-at-top

  from bonjax.tokenizers.hf import HFTokenizer  # pylint: disable=g-import-not-at-top

  specials = {tokenizer.pad_id: "<pad>", tokenizer.bos_id: "<s>", tokenizer.eos_id: "</s>"}
  vocab = {token: i for i, token in specials.items()}
  first = tokenizer.encode(tokenizer.alphabet[0])[0]  # The alphabet's ids are consecutive.
  vocab.update({c: i for i, c in enumerate(tokenizer.alphabet, start=first)})
  model = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<pad>"))
  model.add_special_tokens(list(specials.values()))
  model.pre_tokenizer = tokenizers.pre_tokenizers.Split(tokenizers.Regex(r"[\s\S]"), "isolated")
  model.decoder = tokenizers.decoders.Fuse()
  # Prompts start with BOS (data.batching.encode_prompt): transformers' encode adds it too.
  model.post_processor = tokenizers.processors.TemplateProcessing(
      single="<s> $A", special_tokens=[("<s>", tokenizer.bos_id)])
  return HFTokenizer(model, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id,
                     bos_id=tokenizer.bos_id)


def _byte_characters() -> list[str]:
  """The printable character `tokenizers`' ByteLevel pre-tokenizer maps each byte 0..255 to
  (GPT-2's table: printable bytes stand for themselves, the rest for chr(256 + n))."""
  printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
  table, extra = [], 0
  for b in range(256):
    table.append(chr(b) if b in printable else chr(256 + extra))
    extra += b not in printable
  return table


def _byte_tokenizer_to_hf(tokenizer: Any) -> Any:
  """The byte tokenizer as an HFTokenizer with the same ids: a ByteLevel pre-tokenizer split
  into single bytes, one word-level token per byte, specials at their reserved ids."""
  import tokenizers  # pylint: disable=g-import-not-at-top

  from bonjax.tokenizers.hf import HFTokenizer  # pylint: disable=g-import-not-at-top

  specials = {tokenizer.pad_id: "<pad>", tokenizer.bos_id: "<s>", tokenizer.eos_id: "</s>"}
  vocab = {token: i for i, token in specials.items()}
  first = tokenizer.encode("\0")[0]  # Byte b has id first + b.
  vocab.update({c: first + b for b, c in enumerate(_byte_characters())})
  model = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<pad>"))
  model.add_special_tokens(list(specials.values()))
  model.pre_tokenizer = tokenizers.pre_tokenizers.Sequence([
      tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
      tokenizers.pre_tokenizers.Split(tokenizers.Regex(r"[\s\S]"), "isolated")])
  model.decoder = tokenizers.decoders.ByteLevel()
  model.post_processor = tokenizers.processors.TemplateProcessing(
      single="<s> $A", special_tokens=[("<s>", tokenizer.bos_id)])
  return HFTokenizer(model, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id,
                     bos_id=tokenizer.bos_id)


# Tokenizer class name -> converter to an object with `save(directory)` in transformers' format.
_TOKENIZER_CONVERTERS = {"CharTokenizer": _char_tokenizer_to_hf,
                         "ByteTokenizer": _byte_tokenizer_to_hf}


def hf_tokenizer_for(tokenizer: Any) -> Any:
  """`tokenizer` in a form `save_hf_checkpoint` can write (HF tokenizers are returned as is).

  Raises:
    ValueError: a tokenizer type with no HF form.
  """
  if hasattr(tokenizer, "save"):
    return tokenizer
  name = type(tokenizer).__name__
  if name not in _TOKENIZER_CONVERTERS:
    raise ValueError(f"tokenizer {name}: no Hugging Face form; known: "
                     f"{sorted(_TOKENIZER_CONVERTERS)} and HF tokenizers")
  return _TOKENIZER_CONVERTERS[name](tokenizer)
