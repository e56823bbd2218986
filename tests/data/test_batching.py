"""Static-shape batches: buckets, left-padded prompts, completion target masks."""

import numpy as np
import pytest

from bonjax.data.batching import bucket_length, encode_prompts, encode_supervised
from bonjax.tokenizers.char import CharTokenizer


def test_bucket_length():
  assert bucket_length(5, (8, 16)) == 8
  assert bucket_length(8, (16, 8)) == 8
  assert bucket_length(9, (8, 16)) == 16
  with pytest.raises(ValueError, match="lengths.prompt_buckets: a sequence of 17 tokens"):
    bucket_length(17, (8, 16), "lengths.prompt_buckets")


def test_prompts_are_left_padded_with_bos():
  tok = CharTokenizer()
  tokens, valid = encode_prompts(tok, ["1+2=", "10+20="], (8,))
  assert tokens.shape == (2, 8)
  np.testing.assert_array_equal(valid[0], [0, 0, 0, 1, 1, 1, 1, 1])
  assert tokens[0, 3] == tok.bos_id and tok.decode(tokens[0, 4:]) == "1+2="
  assert tokens[0, 0] == tok.pad_id


def test_supervised_batch_masks_only_the_completion():
  tok = CharTokenizer()
  batch = encode_supervised(tok, ["1+2=", "10+20="], ["3", "30"], (8,), (4,))
  assert batch["tokens"].shape == (2, 12)
  np.testing.assert_array_equal(batch["target_mask"][0], [0] * 8 + [1, 1, 0, 0])
  np.testing.assert_array_equal(batch["target_mask"][1], [0] * 8 + [1, 1, 1, 0])
  assert batch["tokens"][0, 9] == tok.eos_id
  assert tok.decode(batch["tokens"][1, 8:]) == "30"
  assert not (batch["target_mask"] & ~batch["valid"]).any()


def test_char_tokenizer_round_trip_and_errors():
  tok = CharTokenizer()
  text = "(12+3)*4=\nA: 60"
  assert tok.decode(tok.encode(text)) == text
  assert tok.decode(tok.encode("12") + [tok.eos_id] + tok.encode("9")) == "12"
  with pytest.raises(ValueError, match="character 'x' is not in the alphabet"):
    tok.encode("x")


def test_padded_chunks_repeat_the_first_row_of_the_last_chunk():
  from bonjax.data.batching import padded_chunks
  chunks = [(rows.tolist(), padded.tolist()) for rows, padded in padded_chunks(7, 3)]
  assert chunks == [([0, 1, 2], [0, 1, 2]), ([3, 4, 5], [3, 4, 5]), ([6], [6, 6, 6])]
  assert list(padded_chunks(0, 3)) == []
