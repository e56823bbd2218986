"""Tokenizer backed by a Hugging Face `tokenizers.Tokenizer` (a `tokenizer.json`), with chat template.

`HFTokenizer` implements `bonjax.tokenizers.base.Tokenizer`. It reads and writes the files
`transformers` uses (`tokenizer.json` and `tokenizer_config.json`), so a directory written by
`save` loads in `transformers.AutoTokenizer` and vice versa.

Chat templates are Jinja2 templates over `messages` (a list of {"role", "content"} dicts), as
in `tokenizer_config.json`. `chat_prompt` renders them through `transformers`' own
`apply_chat_template` when it is installed (the `hf` extra), so templates using its extensions
(`tojson`, `strftime_now`, loop controls) render exactly as there; without it,
`apply_chat_template` here renders them with jinja2 under the same settings.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
# Newer `transformers` versions keep the chat template in its own file.
CHAT_TEMPLATE_FILE = "chat_template.jinja"


def _raise_template_error(message: str):
  raise ValueError(f"chat template: {message}")


def apply_chat_template(template: str, messages: Sequence[dict[str, str]], *,
                        add_generation_prompt: bool = True, **variables: Any) -> str:
  """Renders a Jinja2 chat template.

  Args:
    template: the template text (e.g. `tokenizer_config.json`'s "chat_template").
    messages: [{"role": "system" | "user" | "assistant", "content": str}, ...].
    add_generation_prompt: end with the header that opens the assistant's turn.
    **variables: further template variables (bos_token, eos_token, ...).

  Returns:
    The prompt text (special tokens as text; `encode` maps them to their ids).
  """
  from jinja2.sandbox import ImmutableSandboxedEnvironment  # pylint: disable=g-import-not-at-top

  # The settings HF chat templates are written for: block tags swallow their own newline.
  env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
  env.globals["raise_exception"] = _raise_template_error
  return env.from_string(template).render(messages=list(messages),
                                          add_generation_prompt=add_generation_prompt,
                                          **variables)


class HFTokenizer:
  """A `tokenizers.Tokenizer` with the ids and chat template of one model.

  Args:
    tokenizer: the `tokenizers.Tokenizer` (special tokens registered as added tokens, so text
      such as "<|im_start|>" encodes to its one id).
    eos_id: id ending a completion.
    pad_id: id used for padding.
    bos_id: id prepended to prompts, or None when the model uses none.
    chat_template: Jinja2 chat template, or None for models used with plain prompts.
    bos_token_id: the vocabulary's BOS token even when prompts do not start with it (e.g.
      a chat model whose template opens turns with it); defaults to `bos_id`.
    stop_ids: every id that ends a completion (e.g. Llama 3's <|eot_id|> and
      <|end_of_text|>, from generation_config.json); defaults to (eos_id,).

  Raises:
    ValueError: an id outside the vocabulary.
  """

  def __init__(self, tokenizer, *, eos_id: int, pad_id: int, bos_id: int | None = None,
               chat_template: str | None = None, bos_token_id: int | None = None,
               stop_ids: Sequence[int] = ()):
    self.tokenizer = tokenizer
    self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    stop_ids = tuple(dict.fromkeys([eos_id, *stop_ids]))  # eos_id first, no repeats
    for name, value in (("eos_id", eos_id), ("pad_id", pad_id), ("bos_id", bos_id),
                        *(("stop_ids", i) for i in stop_ids)):
      if value is not None and not 0 <= value < self.vocab_size:
        raise ValueError(f"{name}={value}: outside the vocabulary of {self.vocab_size} ids")
    self.stop_ids = stop_ids
    self._transformers_tokenizer = None
    self.eos_id = eos_id
    self.pad_id = pad_id
    self.bos_id = bos_id
    self.bos_token_id = bos_id if bos_token_id is None else bos_token_id
    self.chat_template = chat_template

  def encode(self, text: str) -> list[int]:
    """Ids of `text`, special-token text included as single ids; no BOS/EOS added."""
    return self.tokenizer.encode(text, add_special_tokens=False).ids

  def decode(self, ids: Sequence[int]) -> str:
    """Text of `ids` up to the first stop id, without special tokens (pad and BOS included)."""
    ids = [int(i) for i in ids]
    stops = [n for n, i in enumerate(ids) if i in self.stop_ids]
    if stops:
      ids = ids[:stops[0]]
    return self.tokenizer.decode(ids, skip_special_tokens=True)

  def token(self, token_id: int) -> str | None:
    """The vocabulary string of one id."""
    return self.tokenizer.id_to_token(token_id)

  def chat_prompt(self, user_message: str, system: str | None = None) -> str:
    """The prompt text asking the model to answer `user_message`.

    With a chat template: the rendered conversation ending in the assistant's header. Without
    one (base models): `user_message` itself, since such models expect plain text.
    """
    if self.chat_template is None:
      return user_message if system is None else f"{system}\n\n{user_message}"
    messages = ([] if system is None else [{"role": "system", "content": system}])
    messages.append({"role": "user", "content": user_message})
    renderer = self._transformers()
    if renderer is not None:
      return renderer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return apply_chat_template(self.chat_template, messages, add_generation_prompt=True,
                               **self._special_token_strings())

  def _transformers(self):
    """This tokenizer as a `transformers.PreTrainedTokenizerFast` (built once), or None when
    transformers is not installed."""
    if self._transformers_tokenizer is None:
      try:
        import transformers  # pylint: disable=g-import-not-at-top
      except ImportError:
        return None
      tokens = {k: v for k, v in self._special_token_strings().items() if v is not None}
      self._transformers_tokenizer = transformers.PreTrainedTokenizerFast(
          tokenizer_object=self.tokenizer, chat_template=self.chat_template, **tokens)
    return self._transformers_tokenizer

  def _special_token_strings(self) -> dict[str, str | None]:
    name = lambda i: None if i is None else self.tokenizer.id_to_token(i)
    return {"bos_token": name(self.bos_token_id), "eos_token": name(self.eos_id),
            "pad_token": name(self.pad_id)}

  # -------------------------------------------------------------------------------------------
  # Files.
  # -------------------------------------------------------------------------------------------

  def save(self, directory: str) -> None:
    """Writes `tokenizer.json` and `tokenizer_config.json` (loadable by `transformers`)."""
    os.makedirs(directory, exist_ok=True)
    self.tokenizer.save(os.path.join(directory, TOKENIZER_FILE))
    tokens = self._special_token_strings()
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": tokens["bos_token"],
        "eos_token": tokens["eos_token"],
        "pad_token": tokens["pad_token"],
        "add_bos_token": self.bos_id is not None,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1_000_000,
    }
    if self.chat_template is not None:
      config["chat_template"] = self.chat_template
    with open(os.path.join(directory, TOKENIZER_CONFIG_FILE), "w") as f:
      json.dump(config, f, indent=2, ensure_ascii=False)

  @classmethod
  def from_directory(cls, directory: str) -> "HFTokenizer":
    """Reads `tokenizer.json` (+ `tokenizer_config.json` when present) from `directory`.

    BOS is used when `add_bos_token` says so, or, without that key, when the tokenizer's own
    post-processor prepends it.

    Raises:
      FileNotFoundError: no tokenizer.json; ValueError: no EOS token can be found.
    """
    from tokenizers import Tokenizer  # pylint: disable=g-import-not-at-top

    path = os.path.join(directory, TOKENIZER_FILE)
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path}: not found")
    tokenizer = Tokenizer.from_file(path)
    config = {}
    config_path = os.path.join(directory, TOKENIZER_CONFIG_FILE)
    if os.path.exists(config_path):
      with open(config_path) as f:
        config = json.load(f)
    template_path = os.path.join(directory, CHAT_TEMPLATE_FILE)
    if "chat_template" not in config and os.path.exists(template_path):
      with open(template_path) as f:
        config["chat_template"] = f.read()
    return cls.from_tokenizer_config(tokenizer, config)

  @classmethod
  def from_tokenizer_config(cls, tokenizer, config: dict) -> "HFTokenizer":
    """Builds from a `tokenizers.Tokenizer` and a `tokenizer_config.json` dict."""

    def token_id(key: str) -> int | None:
      token = config.get(key)
      if isinstance(token, dict):  # AddedToken serialised as a dict
        token = token.get("content")
      return None if token is None else tokenizer.token_to_id(token)

    eos_id = token_id("eos_token")
    if eos_id is None:
      raise ValueError("tokenizer_config.json names no eos_token found in the vocabulary")
    bos_id = token_id("bos_token")
    add_bos = config.get("add_bos_token")
    if add_bos is None and bos_id is not None:
      add_bos = tokenizer.encode("a", add_special_tokens=True).ids[:1] == [bos_id]
    pad_id = token_id("pad_token")
    return cls(tokenizer, eos_id=eos_id, pad_id=eos_id if pad_id is None else pad_id,
               bos_id=bos_id if add_bos else None, chat_template=config.get("chat_template"),
               bos_token_id=bos_id)
