"""`init_from="hf:<dir>"` and `--mode=export` through the launcher, on a tiny transformers
checkpoint built on the fly: its tokenizer, chat template and EOS ids are the run's, training
and evaluation run, and the exported directory loads in transformers with our logits."""

from __future__ import annotations

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

sys.path.insert(0, os.path.dirname(__file__))
from hf_fixtures import CONFIGS, build_hf_checkpoint, random_params  # pylint: disable=g-import-not-at-top,wrong-import-position
from test_hf_parity import our_logits  # pylint: disable=g-import-not-at-top,wrong-import-position

from bonjax.sampling import sampler  # pylint: disable=g-import-not-at-top,wrong-import-position
from bonjax.training import loop  # pylint: disable=g-import-not-at-top,wrong-import-position
from bonjax.training.config_validation import ConfigError  # pylint: disable=g-import-not-at-top,wrong-import-position
from bonjax.training.run_setup import build_run_setup  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import hf_checkpoint  # pylint: disable=g-import-not-at-top,wrong-import-position
from launch import main  # pylint: disable=g-import-not-at-top,wrong-import-position

pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")

# A 2-step SFT run of the tiny checkpoint with a short evaluation.
OVERRIDES = {"train.num_steps": 2, "train.batch_size": 8, "train.warmup_steps": 1,
             "train.learning_rate": 1e-2, "train.async_checkpoints": False,
             "task.num_train": 16, "task.num_test": 8, "eval.num_prompts": 8,
             "eval.num_samples": 2, "eval.max_new_tokens": 4, "sampling.max_new_tokens": 4,
             "lengths.completion_buckets": (8,), "lengths.prompt_buckets": (96,)}


def _config(directory: str):
  config = hf_checkpoint.get_config(directory)
  for field, value in OVERRIDES.items():
    section, name = field.split(".")
    config[section][name] = value
  return config


def _argv(directory: str, workdir: str, *extra: str) -> list[str]:
  return ["main", f"--config={hf_checkpoint.__file__}:{directory}", f"--workdir={workdir}",
          *(f"--config.{k}={v}" for k, v in OVERRIDES.items()), *extra]


def _torch_logits(directory: str, tokens: np.ndarray) -> np.ndarray:
  model = transformers.AutoModelForCausalLM.from_pretrained(
      directory, dtype=torch.float32, attn_implementation="eager").eval()
  with torch.no_grad():
    return model(input_ids=torch.as_tensor(tokens)).logits.numpy()


def test_hf_checkpoint_trains_evaluates_and_exports(tmp_path):
  source, workdir, export_dir = (str(tmp_path / n) for n in ("qwen", "run", "export"))
  build_hf_checkpoint(source, "qwen2", eos_token_id=[2, 0])
  setup = build_run_setup(_config(source))
  # The checkpoint's architecture, tokenizer, chat template and both EOS ids.
  assert setup.model_cfg.family == "qwen2" and setup.model_cfg.qkv_bias
  assert setup.stop_ids == (2, 0)
  theirs = transformers.AutoTokenizer.from_pretrained(source)
  example = setup.task.test[0]
  question = f"What is {example.metadata['expression']}? Reply with only the final number."
  assert setup.format_prompt(example) == theirs.apply_chat_template(
      [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)
  assert setup.format_prompt(example).startswith("<|im_start|>user\nWhat is")

  assert main.run(_argv(source, workdir, "--mode=train")) == 0
  report = json.loads((tmp_path / "run" / "eval.json").read_text())
  assert report["step"] == 2

  assert main.run(_argv(source, workdir, "--mode=export", f"--export_dir={export_dir}")) == 0
  params, step = loop.restore_params(setup, workdir)
  assert step == 2
  # A run starting from that workdir (RL after SFT) inherits the checkpoint's model.
  follow_up = _config(source)
  follow_up.init_from = workdir
  follow_setup = build_run_setup(follow_up)
  assert (follow_setup.model_cfg, follow_setup.stop_ids) == (setup.model_cfg, (2, 0))
  follow_params, _ = loop.restore_params(follow_setup, workdir)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(params),
               jax.device_get(follow_params))
  tokens = np.random.default_rng(0).integers(0, 263, size=(2, 10))
  ours = our_logits(setup.model_cfg, jax.device_get(params), tokens)
  exported = _torch_logits(export_dir, tokens)
  assert np.max(np.abs(ours - exported)) < 1e-4
  # The export is the trained policy, not the checkpoint it started from.
  assert np.max(np.abs(exported - _torch_logits(source, tokens))) > 1e-3
  config = json.loads((tmp_path / "export" / "config.json").read_text())
  generation = json.loads((tmp_path / "export" / "generation_config.json").read_text())
  assert (config["model_type"], generation["eos_token_id"]) == ("qwen2", [2, 0])
  exported_tokenizer = transformers.AutoTokenizer.from_pretrained(export_dir)
  assert exported_tokenizer.apply_chat_template(
      [{"role": "user", "content": "2+2"}], tokenize=False, add_generation_prompt=True) == (
          theirs.apply_chat_template([{"role": "user", "content": "2+2"}], tokenize=False,
                                     add_generation_prompt=True))


def test_quickstart_model_exports_with_its_character_tokenizer(tmp_path):
  """The tiny preset exports as Llama with an equivalent tokenizers-format char tokenizer."""
  from experiments import quickstart  # pylint: disable=g-import-not-at-top

  workdir, export_dir = str(tmp_path / "run"), str(tmp_path / "export")
  argv = ["main", f"--workdir={workdir}", "--config.train.num_steps=1",
          "--config.task.num_train=8", "--config.task.num_test=8", "--config.train.batch_size=8",
          "--config.eval.num_prompts=8", "--config.eval.prompt_batch_size=8",
          "--config.eval.num_samples=1", "--config.train.async_checkpoints=False"]
  assert main.run(argv + ["--mode=train"]) == 0
  assert main.run(argv + ["--mode=export"]) == 2  # --export_dir is required
  assert main.run(argv + ["--mode=export", f"--export_dir={export_dir}"]) == 0
  config = quickstart.get_config()
  config.eval.prompt_batch_size = 8
  setup = build_run_setup(config)
  params, _ = loop.restore_params(setup, workdir)
  text = setup.format_prompt(setup.task.test[0])
  tokenizer = transformers.AutoTokenizer.from_pretrained(export_dir)
  ids = tokenizer(text)["input_ids"]
  assert ids == [setup.tokenizer.bos_id] + setup.tokenizer.encode(text)
  assert tokenizer.decode(ids, skip_special_tokens=True) == text
  tokens = np.asarray([ids])
  np.testing.assert_allclose(_torch_logits(export_dir, tokens),
                             our_logits(setup.model_cfg, jax.device_get(params), tokens),
                             atol=1e-4)


def test_any_of_several_eos_ids_stops_sampling():
  cfg = CONFIGS["llama"]
  params = random_params(cfg)
  prompt = jnp.asarray([[5, 6, 7]], jnp.int32)
  valid = jnp.ones_like(prompt, bool)
  run = lambda eos: sampler.sample(params, cfg, sampler.SamplingParams(
      num_samples=1, max_new_tokens=6, temperature=0.0, eos_id=eos), prompt, valid,
                                   jnp.zeros((1,), jnp.int32), jax.random.key(0), 0)
  free = run(None)
  first, second = (int(t) for t in free.tokens[0, 0, :2])
  assert first != second
  out = run((60, first))  # The first greedy token stops, as the second of two stop ids.
  assert (int(out.lengths[0, 0]), bool(out.finished[0, 0])) == (1, True)
  out = run((second, 61))  # The second one, as the first stop id.
  assert (int(out.lengths[0, 0]), bool(out.finished[0, 0])) == (2, True)
  assert not bool(free.finished[0, 0]) or int(free.lengths[0, 0]) > 2


def test_broken_hf_directories_are_config_errors(tmp_path):
  with pytest.raises(ConfigError, match=r"init_from='hf:.*missing'.*config.json: not found"):
    build_run_setup(_config(str(tmp_path / "missing")))
  build_hf_checkpoint(str(tmp_path / "ok"), "smollm2")
  os.remove(tmp_path / "ok" / "tokenizer.json")
  with pytest.raises(ConfigError, match=r"tokenizer.json: not found"):
    build_run_setup(_config(str(tmp_path / "ok")))


def test_reward_model_of_an_hf_policy_keeps_its_architecture_and_tokenizer(tmp_path):
  """A learned verifier initialised from an hf: policy reads back as that model, not a preset."""
  import dataclasses  # pylint: disable=g-import-not-at-top

  from bonjax.checkpoints import hf_import  # pylint: disable=g-import-not-at-top
  from bonjax.training.model_source import hf_tokenizer  # pylint: disable=g-import-not-at-top
  from bonjax.models import reward_model as orm_net  # pylint: disable=g-import-not-at-top
  from bonjax.training import learned_verifier as learned  # pylint: disable=g-import-not-at-top

  source = str(tmp_path / "llama3")
  build_hf_checkpoint(source, "llama3")
  cfg, params = hf_import.load_hf_checkpoint(source)
  config = _config(source)
  meta = {"config": config.to_dict(), "prompt_buckets": [96], "completion_buckets": [8],
          "model": dataclasses.asdict(cfg)}
  learned.save_reward_model(str(tmp_path / "orm"), orm_net.init_reward_model(params, cfg), meta)
  hf_tokenizer(source).save(str(tmp_path / "orm"))
  loaded, cfg_back, tokenizer, _ = learned.load_reward_model(str(tmp_path / "orm"))
  assert cfg_back == cfg and cfg_back.rope_scaling.rope_type == "llama3"
  assert tokenizer.encode("What is 2+3?") == hf_tokenizer(source).encode("What is 2+3?")
  np.testing.assert_array_equal(loaded["backbone"]["layers"]["q"], params["layers"]["q"])


def test_model_config_read_back_from_json_is_hashable_and_equal():
  """The converted-weights cache and reward-model records store ModelConfig as JSON."""
  import dataclasses  # pylint: disable=g-import-not-at-top

  from bonjax.models.config import ModelConfig, RopeScaling, get_preset  # pylint: disable=g-import-not-at-top

  for cfg in (get_preset("smollm2-135m"),
              CONFIGS["llama"].replace(rope_scaling=RopeScaling("llama3", 8.0, 1.0, 4.0, 64))):
    back = ModelConfig(**json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert back == cfg and hash(back) == hash(cfg)


@pytest.mark.parametrize("kind", ["char", "byte"])
def test_built_in_tokenizers_export_with_the_same_ids(kind, tmp_path):
  """transformers reads the exported char / byte tokenizer with our ids (BOS first) and text."""
  from bonjax.checkpoints import hf_export  # pylint: disable=g-import-not-at-top
  from bonjax.tokenizers.byte import ByteTokenizer  # pylint: disable=g-import-not-at-top
  from bonjax.tokenizers.char import CharTokenizer  # pylint: disable=g-import-not-at-top

  ours = {"char": CharTokenizer, "byte": ByteTokenizer}[kind]()
  text = "Q: 12+3=\nA: 15" if kind == "char" else "héllo wörld\n\tdef f(x): return x ** 2  # ✓"
  hf_export.hf_tokenizer_for(ours).save(str(tmp_path))
  theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  ids = theirs(text)["input_ids"]
  assert ids == [ours.bos_id] + ours.encode(text)
  assert theirs.decode(ids, skip_special_tokens=True) == text
  assert theirs.eos_token_id == ours.eos_id and theirs.pad_token_id == ours.pad_id
