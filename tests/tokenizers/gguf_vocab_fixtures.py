"""Tiny GGUF tokenizer metadata of both kinds (byte-level BPE and SentencePiece BPE)."""

from __future__ import annotations

CHAT_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
                 "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def byte_level_alphabet() -> list[str]:
  """GPT-2's byte -> printable character table, in byte order."""
  printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
               + list(range(ord("\u00ae"), ord("\u00ff") + 1)))
  table, extra = {}, 0
  for b in range(256):
    if b in printable:
      table[b] = chr(b)
    else:
      table[b] = chr(256 + extra)
      extra += 1
  return [table[b] for b in range(256)]


BYTE_LEVEL_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
BYTE_LEVEL_MERGES = ["t h", "th e", "\u0120 the", "1 2"]


def byte_level_metadata(pre: str = "smollm") -> dict:
  """Vocabulary: 3 control tokens, the 256 byte characters, then one token per merge."""
  merged = [m.replace(" ", "") for m in BYTE_LEVEL_MERGES]
  tokens = BYTE_LEVEL_SPECIALS + byte_level_alphabet() + merged
  return {
      "tokenizer.ggml.model": "gpt2",
      "tokenizer.ggml.pre": pre,
      "tokenizer.ggml.tokens": tokens,
      "tokenizer.ggml.token_type": [3] * 3 + [1] * (len(tokens) - 3),
      "tokenizer.ggml.merges": list(BYTE_LEVEL_MERGES),
      "tokenizer.ggml.bos_token_id": 1,
      "tokenizer.ggml.eos_token_id": 2,
      "tokenizer.ggml.padding_token_id": 2,
      "tokenizer.ggml.add_bos_token": False,
      "tokenizer.chat_template": CHAT_TEMPLATE,
  }


# (piece, score) of the SentencePiece vocabulary's normal pieces. Merging by score:
# "▁t" (-1) before "he" (-2) before "▁the" (-3) before "th" (-4).
SPM_PIECES = [("\u2581t", -1.0), ("he", -2.0), ("\u2581the", -3.0), ("th", -4.0),
              ("\u2581", -10.0), ("t", -11.0), ("h", -12.0), ("e", -13.0), ("n", -14.0),
              ("b", -15.0)]
SPM_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]
SPM_USER_DEFINED = ["\n\n"]


def sentencepiece_metadata() -> dict:
  """Vocabulary: pad/eos/bos (control), unk, 256 byte tokens, "\\n\\n" (user), SPM_PIECES."""
  tokens = (SPM_SPECIALS + [f"<0x{b:02X}>" for b in range(256)] + SPM_USER_DEFINED
            + [p for p, _ in SPM_PIECES])
  types = [3, 3, 3, 2] + [6] * 256 + [4] + [1] * len(SPM_PIECES)
  scores = [0.0] * (4 + 256 + 1) + [s for _, s in SPM_PIECES]
  return {
      "tokenizer.ggml.model": "llama",
      "tokenizer.ggml.pre": "default",
      "tokenizer.ggml.tokens": tokens,
      "tokenizer.ggml.token_type": types,
      "tokenizer.ggml.scores": scores,
      "tokenizer.ggml.bos_token_id": 2,
      "tokenizer.ggml.eos_token_id": 1,
      "tokenizer.ggml.unknown_token_id": 3,
      "tokenizer.ggml.padding_token_id": 0,
      "tokenizer.ggml.add_bos_token": True,
      "tokenizer.ggml.add_space_prefix": False,
  }
