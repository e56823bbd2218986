"""A trained policy as a Hugging Face checkpoint that `transformers` loads:

  python -m launch.main --mode=export --workdir=W --export_dir=D [--config=... as trained]
  # transformers.AutoModelForCausalLM.from_pretrained(D), AutoTokenizer.from_pretrained(D)

Writes D/config.json, D/model.safetensors, D/generation_config.json (every stop id) and the
tokenizer files (with the chat template of an `hf:` checkpoint). The architecture is the one
the run trained: a run started from `init_from="hf:<dir>"` exports as that checkpoint's family
(Qwen2 stays Qwen2), the built-in presets as Llama / Gemma (see `hf_layout.EXPORT_ARCHITECTURE`).
Every process of a multi-host run gathers the parameters; process 0 writes.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import ml_collections

from bonjax.checkpoints import hf_export
from bonjax.models import lora
from bonjax.parallel.distributed import fetch_to_host
from bonjax.training import loop
from bonjax.training.config_validation import ConfigError
from bonjax.training.run_setup import RunSetup, build_run_setup


def prepare_params(setup: RunSetup, params: Any) -> Any:
  """The one place where trained params become the plain model weights that are written.

  LoRA adapters are merged into their base weights here, before any format conversion.

  Args:
    setup: the run setup (model config).
    params: params restored from the workdir's checkpoint (global, possibly sharded arrays).

  Returns:
    Host numpy params in the base layout (`transformer.init_params` without adapters).
  """
  return fetch_to_host(lora.merge_lora(params, setup.model_cfg))


def export_policy(config: ml_collections.ConfigDict, workdir: str, export_dir: str, *,
                  dtype: str = "float32") -> dict[str, Any]:
  """Writes the latest checkpoint of `workdir` (or the `init_from` weights when nothing was
  trained yet) as an HF checkpoint directory.

  Args:
    config: the run's config (model, tokenizer, init_from).
    workdir: the run directory.
    export_dir: output directory (created; files of the same names are replaced).
    dtype: "float32" or "float16" tensors.

  Returns:
    {"step", "export_dir", "model_type"}.

  Raises:
    FileNotFoundError: no checkpoint in `workdir` and no pretrained / HF `init_from`.
    ConfigError: the model or tokenizer has no HF form.
  """
  setup = build_run_setup(config)
  source = loop.params_source(config, workdir)
  params, step = loop.restore_params(setup, source)
  weights = prepare_params(setup, params)
  try:
    tokenizer = hf_export.hf_tokenizer_for(setup.tokenizer)
    model_type = None
    if jax.process_index() == 0:
      model_type = hf_export.save_hf_checkpoint(export_dir, setup.model_cfg, weights, tokenizer,
                                                dtype=dtype)
  except ValueError as e:
    raise ConfigError(f"--mode=export: {e}") from None
  logging.info("Exported step %d of %s to %s (%s)", step, source, export_dir, model_type)
  return {"step": step, "export_dir": os.path.abspath(export_dir), "model_type": model_type}
