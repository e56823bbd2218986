"""HFTokenizer files and chat templates, checked against `transformers` where it is installed."""

from __future__ import annotations

import json
import os
import sys

import pytest

pytest.importorskip("tokenizers")

sys.path.insert(0, os.path.dirname(__file__))
import gguf_vocab_fixtures as fx  # pylint: disable=g-import-not-at-top,wrong-import-position

from bonjax.tokenizers import gguf_vocab  # pylint: disable=g-import-not-at-top,wrong-import-position
from bonjax.tokenizers import hf  # pylint: disable=g-import-not-at-top,wrong-import-position

TEXTS = ["the then 123", " the b\n\na é", "<|im_start|>user\nthe<|im_end|>"]


@pytest.fixture(params=["byte_level", "sentencepiece"])
def tokenizer(request):
  meta = {"byte_level": fx.byte_level_metadata, "sentencepiece": fx.sentencepiece_metadata}[
      request.param]()
  return gguf_vocab.tokenizer_from_gguf_metadata(meta)


def test_save_and_read_back(tokenizer, tmp_path):
  tokenizer.save(str(tmp_path))
  back = hf.HFTokenizer.from_directory(str(tmp_path))
  assert (back.vocab_size, back.bos_id, back.bos_token_id, back.eos_id, back.pad_id,
          back.chat_template) == (tokenizer.vocab_size, tokenizer.bos_id, tokenizer.bos_token_id,
                                  tokenizer.eos_id, tokenizer.pad_id, tokenizer.chat_template)
  for text in TEXTS:
    assert back.encode(text) == tokenizer.encode(text)


def test_bos_use_is_inferred_from_the_post_processor(tokenizer, tmp_path):
  tokenizer.save(str(tmp_path))
  config_path = tmp_path / hf.TOKENIZER_CONFIG_FILE
  config = json.loads(config_path.read_text())
  del config["add_bos_token"]
  config_path.write_text(json.dumps(config))
  assert hf.HFTokenizer.from_directory(str(tmp_path)).bos_id == tokenizer.bos_id


def test_transformers_reads_the_saved_files(tokenizer, tmp_path):
  transformers = pytest.importorskip("transformers")
  tokenizer.save(str(tmp_path))
  theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  for text in TEXTS:
    assert theirs(text, add_special_tokens=False)["input_ids"] == tokenizer.encode(text)
    ids = tokenizer.encode(text)
    assert theirs.decode(ids, skip_special_tokens=True) == tokenizer.decode(ids)
  with_bos = theirs("the", add_special_tokens=True)["input_ids"]
  assert (with_bos[0] == tokenizer.bos_id) == (tokenizer.bos_id is not None)
  assert (theirs.eos_token_id, theirs.pad_token_id) == (tokenizer.eos_id, tokenizer.pad_id)
  if tokenizer.chat_template is not None:
    messages = [{"role": "user", "content": "2+3=?"}]
    assert theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
        tokenizer.chat_prompt("2+3=?"))


def test_apply_chat_template_variables_and_errors():
  template = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
              "{{ raise_exception('no system role') }}{% endif %}{{ m['content'] }}\n"
              "{% endfor %}{% if add_generation_prompt %}A:{% endif %}")
  messages = [{"role": "user", "content": "hi"}]
  assert hf.apply_chat_template(template, messages, bos_token="<s>") == "<s>hi\nA:"
  assert hf.apply_chat_template(template, messages, add_generation_prompt=False,
                                bos_token="") == "hi\n"
  with pytest.raises(ValueError, match="no system role"):
    hf.apply_chat_template(template, [{"role": "system", "content": "x"}])


def test_out_of_vocabulary_ids_are_rejected(tokenizer):
  with pytest.raises(ValueError, match="eos_id=100000"):
    hf.HFTokenizer(tokenizer.tokenizer, eos_id=100_000, pad_id=0)
