"""The learned verifier: exact AUC and loss values, what the ORM reads, that it can learn, and
that a trained one loads as `verifier.kind = "learned"` with exact correctness kept."""

import itertools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.data import batching
from bonjax.data.batching import encode_supervised
from bonjax.models import transformer
from bonjax.models.config import get_preset
from bonjax.models.logprobs import sequence_logprobs
from bonjax.models import reward_model as orm_net
from bonjax.tokenizers.char import CharTokenizer
from bonjax.training import learned_verifier as learned
from bonjax.training import loop
from bonjax.training import reward_model as orm_training
from bonjax.training.config_validation import ConfigError
from bonjax.training.run_setup import build_run_setup
from bonjax.training.tasks import build_task
from bonjax.verifiers import reward_model as orm
from bonjax.verifiers.arithmetic import ArithmeticVerifier
from experiments import learned_verifier
from tests.small_configs import shrink

TOKENIZER = CharTokenizer()
CFG = get_preset("tiny")


def brute_force_auc(scores, labels):
  pos = [s for s, y in zip(scores, labels) if y]
  neg = [s for s, y in zip(scores, labels) if not y]
  wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p, q in itertools.product(pos, neg))
  return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("scores,labels,expected", [
    ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.75),
    ([0.5, 0.5, 0.5, 0.9], [1, 0, 0, 1], 0.75),  # the tied positive wins half of its pairs
    ([1, 2, 3, 4], [0, 0, 1, 1], 1.0),
    ([4, 3, 2, 1], [0, 0, 1, 1], 0.0),
    ([7, 7, 7, 7], [0, 1, 0, 1], 0.5),
    ([0.2, 0.9, 0.1], [1, 0, 0], 0.5),
])
def test_roc_auc_exact_values(scores, labels, expected):
  assert orm.roc_auc(np.array(scores), np.array(labels, bool)) == pytest.approx(expected, abs=1e-12)


def test_roc_auc_equals_pairwise_count_with_many_ties():
  rng = np.random.default_rng(0)
  scores = rng.integers(0, 5, size=200).astype(float)
  labels = rng.random(200) < 0.4
  assert orm.roc_auc(scores, labels) == pytest.approx(brute_force_auc(scores, labels), abs=1e-12)


def test_roc_auc_undefined_with_one_class():
  assert orm.roc_auc(np.array([0.1, 0.2]), np.array([True, True])) is None
  with pytest.raises(ValueError, match="labels"):
    orm.roc_auc(np.zeros(3), np.zeros(2, bool))


def test_within_prompt_auc_ignores_prompt_difficulty():
  """A score that ranks prompts (all of prompt 0 above prompt 1) but not the samples of a
  prompt has pooled AUC above 0.5 and within-prompt AUC exactly 0.5."""
  scores = np.array([[0.9, 0.9, 0.9], [0.1, 0.1, 0.1], [0.5, 0.5, 0.5]])
  labels = np.array([[1, 1, 0], [0, 0, 1], [1, 1, 1]], bool)
  assert orm.roc_auc(scores, labels) > 0.5
  assert orm.within_prompt_auc(scores, labels) == 0.5  # prompt 2 (all right) left out
  scores = np.array([[0.3, 0.2, 0.1], [0.1, 0.2, 0.3]])
  labels = np.array([[1, 0, 0], [1, 0, 0]], bool)
  assert orm.within_prompt_auc(scores, labels) == pytest.approx(0.5)  # 1.0 and 0.0
  assert orm.within_prompt_auc(scores, np.ones_like(labels)) is None


def random_orm_params(seed=0, bias=0.0):
  params = orm_net.init_reward_model(transformer.init_params(CFG, jax.random.key(seed)), CFG)
  params["head"]["w"] = 0.1 * jax.random.normal(jax.random.key(seed + 1), (CFG.d_model,))
  params["head"]["b"] = jnp.asarray(bias, jnp.float32)
  return params


def test_orm_loss_is_exact_binary_cross_entropy():
  """With a zero head weight every logit is the bias c, so the loss is the closed form
  -mean(y log s(c) + (1 - y) log(1 - s(c)))."""
  c = 0.7
  params = orm_net.init_reward_model(transformer.init_params(CFG, jax.random.key(0)), CFG)
  params["head"]["b"] = jnp.asarray(c)
  pairs = batching.encode_pairs(TOKENIZER, ["1+2="] * 4, ["3", "4", "3", "5"], (16,), (16,))
  labels = np.array([1, 0, 1, 0], np.float32)
  loss, metrics = orm_net.orm_loss(params, CFG, {**pairs, "labels": labels})
  sigmoid = 1 / (1 + math.exp(-c))
  expected = -(2 * math.log(sigmoid) + 2 * math.log(1 - sigmoid)) / 4
  assert float(loss) == pytest.approx(expected, rel=1e-6)
  assert float(metrics["accuracy"]) == 0.5  # every logit > 0 predicts "correct"


def test_encode_pairs_matches_supervised_layout_and_truncates_long_output():
  prompts, completions = ["12+3=", "4-1="], ["15", "3"]
  pairs = batching.encode_pairs(TOKENIZER, prompts, completions, (16,), (8,))
  supervised = encode_supervised(TOKENIZER, prompts, completions, (16,), (8,))
  for key in ("tokens", "valid", "target_mask"):
    np.testing.assert_array_equal(pairs[key], supervised[key])
  # A runaway completion keeps its last tokens instead of failing the batch.
  pairs = batching.encode_pairs(TOKENIZER, ["1+1="], ["9" * 10_000 + "2"], (16,), (8,))
  tokens, valid = pairs["tokens"], pairs["valid"]
  assert tokens.shape == (1, 24) and valid[0, 16:].all()
  assert TOKENIZER.decode(tokens[0, 16:].tolist()).endswith("2")


def test_orm_reads_the_last_real_token_and_ignores_padding():
  params = random_orm_params()
  pairs = batching.encode_pairs(TOKENIZER, ["12+3=", "4-1="], ["15", "3"], (16,), (8,))
  tokens, valid, mask = pairs["tokens"], pairs["valid"], pairs["target_mask"]
  logits = orm_net.orm_logits(params, CFG, tokens, valid, mask)
  h = transformer.hidden_states(params["backbone"], CFG, tokens,
                                transformer.positions_from_valid(valid), valid)
  last = [np.flatnonzero(v)[-1] for v in valid]
  expected = [float(h[i, j] @ params["head"]["w"] + params["head"]["b"]) for i, j in enumerate(last)]
  np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-5, atol=1e-6)
  garbage = np.where(valid, tokens, 7)  # other ids in the padding
  np.testing.assert_allclose(np.asarray(orm_net.orm_logits(params, CFG, garbage, valid, mask)),
                             np.asarray(logits), rtol=1e-6, atol=1e-6)


def test_likelihood_term_is_the_mean_completion_logprob():
  """With w = b = 0 and likelihood = 1 the logit is the backbone's mean log p of the
  completion tokens (EOS included), as teacher-forced scoring computes it."""
  params = orm_net.init_reward_model(transformer.init_params(CFG, jax.random.key(3)), CFG)
  params["head"]["likelihood"] = jnp.asarray(1.0)
  pairs = batching.encode_pairs(TOKENIZER, ["12+3=", "4-1="], ["15", "3"], (16,), (8,))
  logits = orm_net.orm_logits(params, CFG, pairs["tokens"], pairs["valid"], pairs["target_mask"])
  total, _ = sequence_logprobs(params["backbone"], CFG, pairs["tokens"], pairs["valid"],
                               pairs["target_mask"])
  np.testing.assert_allclose(np.asarray(logits), np.asarray(total) / np.array([3, 2]),
                             rtol=1e-5)


def small_config(tmp_path, init_from=""):
  config = shrink(learned_verifier.get_config(), num_train=128, num_test=16, batch_size=16,
                  eval_samples=4)
  config.init_from = init_from
  config.train.num_steps = 6
  config.train.checkpoint_every = 6
  rm = config.reward_model
  rm.num_prompts, rm.num_samples, rm.num_eval_prompts = 32, 4, 16
  rm.train.num_steps, rm.train.batch_size, rm.train.warmup_steps = 8, 32, 1
  rm.train.log_every = 4
  return config


def test_orm_learns_a_token_determined_label(tmp_path):
  """Label = the completion ends in an even digit: an ORM on a random backbone must learn it
  to a held-out AUC near 1 in a few dozen steps (a broken head, loss sign or read-out
  position stays near 0.5)."""
  config = small_config(tmp_path, init_from="unused")
  config.reward_model.train_backbone = True  # a random backbone has no features to probe
  config.reward_model.train.num_steps = 60
  config.reward_model.train.learning_rate = 3e-3
  setup = build_run_setup(config)
  rng = np.random.default_rng(0)
  completions = [str(v) for v in rng.integers(0, 100, size=600)]
  prompts = [f"{a}+{b}=" for a, b in rng.integers(0, 50, size=(600, 2))]
  labels = np.array([int(c[-1]) % 2 == 0 for c in completions], np.float32)
  pairs = batching.encode_pairs(TOKENIZER, prompts, completions, (16,), (16,))
  data = {**{k: v[:512] for k, v in pairs.items()}, "labels": labels[:512]}
  params = {"backbone": setup.init_params(0), "head": orm_net.init_head(CFG)}
  params = orm_training.fit(setup, params, data, writer=None, progress=False)
  probs = learned.score_pairs(params, CFG, TOKENIZER, prompts[512:], completions[512:], (16,), (16,))
  assert orm.roc_auc(probs, labels[512:] > 0.5) > 0.95


def test_learned_verifier_keeps_exact_correctness_and_is_order_independent():
  base = ArithmeticVerifier()
  verifier = learned.LearnedVerifier(base, random_orm_params(bias=0.3), CFG, TOKENIZER, (16,), (16,),
                                 batch_size=4)
  prompts = ["12+3=", "4-1=", "7+7=", "9-9=", "1+1=", "2+2=", "3+3="]
  completions = ["15", "2", "14", "9" * 5000, "", "4 = 4", "six"]  # "six": not in the alphabet
  answers = ["15", "3", "14", "0", "2", "4", "6"]
  results = verifier.verify(prompts, completions, answers=answers)
  exact = base.verify(prompts, completions, answers=answers)
  assert [r.correct for r in results] == [r.correct for r in exact]
  assert [r.answer for r in results] == [r.answer for r in exact]
  assert [r.status for r in results] == [r.status for r in exact]
  scores = np.array([r.score for r in results])
  assert np.all((scores[:6] > 0) & (scores[:6] < 1)) and len(set(scores.round(6))) > 1
  assert scores[6] == 0.0 and "not encodable" in results[6].detail
  order = [5, 3, 6, 0, 1, 4, 2]
  permuted = verifier.verify([prompts[i] for i in order], [completions[i] for i in order],
                             answers=[answers[i] for i in order])
  np.testing.assert_allclose([r.score for r in permuted], scores[order], rtol=1e-6)


def test_learned_kind_needs_a_trained_reward_model(tmp_path):
  config = small_config(tmp_path)
  config.verifier.kind = "learned"
  with pytest.raises(ValueError, match="verifier.checkpoint"):
    build_task(config)
  config.verifier.checkpoint = str(tmp_path / "nothing")
  with pytest.raises(ValueError, match="launch.train_verifier"):
    build_task(config)


def test_config_errors_name_the_field(tmp_path):
  config = small_config(tmp_path)
  config.reward_model.num_samples = 0
  config.reward_model.train.learning_rate = -1.0
  config.reward_model.completion_buckets = (4,)
  with pytest.raises(ConfigError) as e:
    orm_training.check_config(config)
  for field in ("init_from", "reward_model.num_samples", "reward_model.train.learning_rate"):
    assert field in str(e.value)
  config = small_config(tmp_path, init_from="x")
  config.reward_model.completion_buckets = (4,)
  with pytest.raises(ConfigError, match=r"reward_model.completion_buckets=\(4,\).*EOS"):
    orm_training.check_config(config)


def test_train_report_save_and_load_as_learned_verifier(tmp_path):
  """SFT policy -> harvested ORM -> report with AUC and three selection curves -> the saved
  ORM loads through `verifier.kind = "learned"` and scores exactly as the trained one."""
  policy_dir, orm_dir = str(tmp_path / "policy"), str(tmp_path / "orm")
  config = small_config(tmp_path, init_from=policy_dir)
  loop.train(small_config(tmp_path), policy_dir)
  report = orm_training.train_reward_model(config, orm_dir, progress=False)
  # A 6-step policy may get nothing right, and AUC is undefined with one class.
  if 0.0 < report["positive_rate"] < 1.0:
    assert 0.0 <= report["auc"] <= 1.0
  else:
    assert report["auc"] is None
  assert report["num_train_pairs"] == 32 * 4
  oracle = report["curves"]["oracle"]["metrics"]
  assert oracle["bon_acc@k"]["mean"] == pytest.approx(oracle["pass@k"]["mean"])
  for name in ("reward_model.json", "verifier_report.json", "bon_selection.png", "metrics.jsonl"):
    assert os.path.exists(os.path.join(orm_dir, name)), name

  config.verifier.kind, config.verifier.checkpoint = "learned", orm_dir
  task = build_task(config)
  examples = list(task.test[:4])
  completions = [e.answer for e in examples[:2]] + ["-999", "12"]
  results = task.verify_examples(examples, completions)
  assert [r.correct for r in results[:3]] == [True, True, False]
  params, cfg, tokenizer, _ = learned.load_reward_model(orm_dir)
  expected = learned.score_pairs(params, cfg, tokenizer, [e.prompt for e in examples], completions,
                             (16,), (16,))
  np.testing.assert_allclose([r.score for r in results], expected, rtol=1e-6)


def test_probe_mode_trains_only_the_head(tmp_path):
  config = small_config(tmp_path, init_from="unused")
  config.reward_model.train_backbone = False
  config.reward_model.train.weight_decay = 0.1  # would move a frozen backbone if applied
  setup = build_run_setup(config)
  pairs = batching.encode_pairs(TOKENIZER, ["1+2="] * 32, ["3", "4"] * 16, (16,), (16,))
  data = {**pairs, "labels": np.tile([1.0, 0.0], 16).astype(np.float32)}
  backbone = jax.device_get(setup.init_params(0))
  params = orm_training.fit(setup, {"backbone": setup.init_params(0), "head": orm_net.init_head(CFG)},
                            data, writer=None, progress=False)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(params["backbone"]), backbone)
  assert np.abs(np.asarray(params["head"]["w"])).sum() > 0
