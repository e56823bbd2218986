"""Golden shardings: the SFT train step and the sampler of real presets, compiled ahead of time.

The train step (`sft_loss` + `make_train_step`, jitted by `jit_train_step` with the shardings
the loop uses) and the sampler of `smollm2-135m` and `gemma3-270m` are lowered and compiled on
8 simulated CPU devices for the mesh layouts (data, fsdp, tensor) = (8,1,1), (1,8,1), (2,2,2),
from jax.ShapeDtypeStruct arguments only: nothing is run and no weights are allocated. The
PartitionSpecs of the compiled programs' inputs and outputs (parameters, optimizer state, batch,
metrics, rollout) are compared with the checked-in expectations in tests/parallel/golden/.

After an intended change of the sharding rules or of the programs, regenerate them with

  python tests/parallel/test_golden_shardings.py --regenerate

and review the diff of tests/parallel/golden/*.json.

Compile time: about 3-9 s per program on 2 cores whatever the depth (layers are scanned), so
the presets keep their real sizes; batch and lengths are small. The (2,2,2) layout, which uses
every mesh axis, runs by default; the other two layouts are marked slow.

Numerics across these layouts (same loss and parameters after one step as on one device) are
checked by tests/training/test_loop.py.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any

# Run as a script (to regenerate), set up what tests/conftest.py sets up under pytest.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _REPO_ROOT not in sys.path:
  sys.path.insert(0, _REPO_ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

from bonjax.models.config import ModelConfig, get_preset  # noqa: E402
from bonjax.parallel import sharding as sharding_lib  # noqa: E402
from bonjax.parallel.mesh import make_mesh  # noqa: E402
from bonjax.sampling import sampler as sampler_lib  # noqa: E402
from bonjax.training import loop  # noqa: E402
from bonjax.training.sft import sft_loss  # noqa: E402
from bonjax.training.run_setup import RunSetup  # noqa: E402
from bonjax.training.state import make_optimizer  # noqa: E402
from bonjax.training.step import jit_train_step, make_train_step  # noqa: E402

GOLDEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
PRESETS = ("smollm2-135m", "gemma3-270m")
LAYOUTS = ((8, 1, 1), (1, 8, 1), (2, 2, 2))
DEFAULT_LAYOUT = (2, 2, 2)

# Small shapes keep compile time bounded; every batch shard gets at least one prompt.
TRAIN_BATCH, TRAIN_LENGTH = 8, 16
SAMPLE_PROMPTS, PROMPT_LENGTH = 8, 8
SAMPLING = sampler_lib.SamplingParams(num_samples=2, max_new_tokens=4, eos_id=2, pad_id=0)

# LLVM optimisation changes neither shardings nor buffer sizes, only compile time.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def layout_name(layout: tuple[int, int, int]) -> str:
  return "x".join(str(s) for s in layout)


def mesh_of(layout: tuple[int, int, int]) -> Mesh:
  """A (data, fsdp, tensor) mesh over the first prod(layout) devices."""
  return make_mesh(*layout, devices=jax.devices()[:int(np.prod(layout))])


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
  """What RunSetup.batch_sharding gives: the leading prompt axis over data x fsdp."""
  return NamedSharding(mesh, PartitionSpec(sharding_lib.DEFAULT_RULES["batch"],
                                           *([None] * (ndim - 1))))


def _abstract(tree: Any, shardings: Any) -> Any:
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree,
                      shardings)


def _model_setup(cfg: ModelConfig, mesh: Mesh, compute_dtype: Any = jnp.float32) -> RunSetup:
  """A RunSetup with only the model and the mesh: all the abstract state and shardings read."""
  return RunSetup(config=None, model_cfg=cfg, tokenizer=None, task=None, mesh=mesh,
                  compute_dtype=compute_dtype)


def abstract_train_step(cfg: ModelConfig, mesh: Mesh, batch: int, length: int,
                        compute_dtype: Any = jnp.float32):
  """The loop's jitted SFT train step and abstract (state, batch) arguments on `mesh`.

  Returns:
    (jitted step, abstract TrainState, abstract batch dict), shardings as the loop sets them.
  """
  optimizer = make_optimizer(loop_train_config())
  setup = _model_setup(cfg, mesh, compute_dtype)
  shardings = loop.state_shardings(setup, optimizer)
  state = setup.abstract_train_state(optimizer)
  dtypes = {"tokens": jnp.int32, "valid": jnp.bool_, "target_mask": jnp.bool_}
  batch_shardings = {k: batch_sharding(mesh, 2) for k in dtypes}
  abstract_batch = {k: jax.ShapeDtypeStruct((batch, length), d, sharding=batch_shardings[k])
                    for k, d in dtypes.items()}
  loss_fn = functools.partial(sft_loss, model_cfg=cfg, compute_dtype=compute_dtype)
  step = jit_train_step(make_train_step(loss_fn, optimizer), shardings, batch_shardings, mesh)
  return step, _abstract(state, shardings), abstract_batch


def abstract_sampler_args(cfg: ModelConfig, mesh: Mesh, prompts: int, prompt_length: int):
  """Abstract arguments of `sampler.sample` as RunSetup.sample passes them on `mesh`.

  Returns:
    (params, prompt_tokens, prompt_valid, prompt_ids, rng, step), all jax.ShapeDtypeStruct.
  """
  setup = _model_setup(cfg, mesh)
  params, param_shardings = setup.abstract_params(), setup.param_shardings()
  replicated = sharding_lib.replicated(mesh)
  key = jax.eval_shape(lambda: jax.random.key(0))
  return (_abstract(params, param_shardings),
          jax.ShapeDtypeStruct((prompts, prompt_length), jnp.int32,
                               sharding=batch_sharding(mesh, 2)),
          jax.ShapeDtypeStruct((prompts, prompt_length), jnp.bool_,
                               sharding=batch_sharding(mesh, 2)),
          jax.ShapeDtypeStruct((prompts,), jnp.int32, sharding=batch_sharding(mesh, 1)),
          jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=replicated),
          jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated))


def compile_sampler(cfg: ModelConfig, mesh: Mesh, sampling: sampler_lib.SamplingParams,
                    prompts: int, prompt_length: int, compute_dtype: Any = jnp.float32):
  """`sampler.sample` lowered and compiled for abstract sharded arguments."""
  params, tokens, valid, ids, rng, step = abstract_sampler_args(cfg, mesh, prompts,
                                                                prompt_length)
  lowered = sampler_lib.sample.lower(params, cfg, sampling, tokens, valid, ids, rng, step,
                                     compute_dtype=compute_dtype)
  return lowered.compile(FAST_COMPILE)


def loop_train_config():
  """The quickstart's `train` section: the optimizer (AdamW + clipping) runs use."""
  from experiments import quickstart  # Local import: experiments/ is not a package dependency.

  return quickstart.get_config().train


def spec_json(sharding: Any, ndim: int) -> list:
  """A PartitionSpec as JSON: one entry per dimension (null, an axis, or a list of axes)."""
  spec = tuple(sharding.spec) + (None,) * (ndim - len(sharding.spec))
  return [list(s) if isinstance(s, tuple) else s for s in spec]


def specs_by_path(shardings: Any, avals: Any) -> dict[str, list]:
  """{pytree path: spec_json} for matching trees of shardings and shaped values."""
  flat_shardings = jax.tree_util.tree_leaves_with_path(shardings)
  flat_avals = jax.tree.leaves(avals)
  assert len(flat_shardings) == len(flat_avals), (len(flat_shardings), len(flat_avals))
  return {jax.tree_util.keystr(path): spec_json(s, len(a.shape))
          for (path, s), a in zip(flat_shardings, flat_avals)}


def train_step_specs(cfg: ModelConfig, layout: tuple[int, int, int]) -> dict[str, Any]:
  """PartitionSpecs of the compiled train step's inputs and outputs."""
  step, state, batch = abstract_train_step(cfg, mesh_of(layout), TRAIN_BATCH, TRAIN_LENGTH)
  lowered = step.lower(state, batch)
  compiled = lowered.compile(FAST_COMPILE)
  (in_state, in_batch), _ = compiled.input_shardings
  out_state, out_metrics = compiled.output_shardings
  out_avals = jax.eval_shape(step, state, batch)
  return {"inputs": {"state": specs_by_path(in_state, state),
                     "batch": specs_by_path(in_batch, batch)},
          "outputs": {"state": specs_by_path(out_state, out_avals[0]),
                      "metrics": specs_by_path(out_metrics, out_avals[1])}}


def sampler_specs(cfg: ModelConfig, layout: tuple[int, int, int]) -> dict[str, Any]:
  """PartitionSpecs of the compiled sampler's inputs and (propagated) outputs."""
  mesh = mesh_of(layout)
  args = abstract_sampler_args(cfg, mesh, SAMPLE_PROMPTS, PROMPT_LENGTH)
  compiled = compile_sampler(cfg, mesh, SAMPLING, SAMPLE_PROMPTS, PROMPT_LENGTH)
  in_shardings, _ = compiled.input_shardings
  names = ("params", "prompt_tokens", "prompt_valid", "prompt_ids", "rng", "step")
  inputs = {name: specs_by_path(s, a) for name, s, a in zip(names, in_shardings, args)}
  rollout = jax.eval_shape(lambda *a: sampler_lib.sample(a[0], cfg, SAMPLING, *a[1:]), *args)
  return {"inputs": inputs, "outputs": specs_by_path(compiled.output_shardings, rollout)}


PROGRAMS = {"train_step": train_step_specs, "sampler": sampler_specs}


def golden_path(preset: str) -> str:
  return os.path.join(GOLDEN_DIR, f"{preset}.json")


def load_golden(preset: str) -> dict[str, Any]:
  with open(golden_path(preset)) as f:
    return json.load(f)


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}/"))
    else:
      out[f"{prefix}{key}"] = value
  return out


def differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
  """Readable differences between two spec trees ("path: expected X, got Y")."""
  want, got = _flat(expected), _flat(actual)
  lines = [f"{k}: expected {want.get(k, '<absent>')}, got {got.get(k, '<absent>')}"
           for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k)]
  return lines


def _check(preset: str, layout: tuple[int, int, int], program: str) -> None:
  actual = PROGRAMS[program](get_preset(preset), layout)
  expected = load_golden(preset)[layout_name(layout)][program]
  diff = differences(expected, actual)
  assert not diff, (f"{preset} {program} on mesh {layout} differs from {golden_path(preset)} "
                    f"({len(diff)} entries; regenerate with `python "
                    f"tests/parallel/test_golden_shardings.py --regenerate` if intended):\n  "
                    + "\n  ".join(diff[:40]))


def _cases(layouts):
  return [pytest.param(p, l, prog, id=f"{p}-{layout_name(l)}-{prog}",
                       marks=() if l == DEFAULT_LAYOUT else pytest.mark.slow)
          for p in PRESETS for l in layouts for prog in PROGRAMS]


@pytest.mark.devices(8)
@pytest.mark.parametrize("preset, layout, program", _cases(LAYOUTS))
def test_compiled_shardings_match_golden(preset, layout, program):
  _check(preset, layout, program)


def test_golden_files_hold_the_expected_layouts_and_rules():
  """The checked-in expectations encode the sharding rules (and were not regenerated blindly)."""
  for preset in PRESETS:
    golden = load_golden(preset)
    assert sorted(golden) == sorted(layout_name(l) for l in LAYOUTS)
    params = golden["2x2x2"]["train_step"]["inputs"]["state"]
    # ZeRO-3 style: embed over fsdp, vocabulary and MLP over tensor.
    assert params[".params['embedding']"] == ["tensor", "fsdp"]
    assert params[".params['layers']['gate']"] == [None, "fsdp", "tensor"]
    # Adam's moments follow their parameters.
    mu = [k for k in params if k.endswith(".mu['layers']['gate']")]
    assert mu and all(params[k] == [None, "fsdp", "tensor"] for k in mu)
    # Pure data parallelism replicates every parameter.
    dp = golden["8x1x1"]["train_step"]["inputs"]["state"]
    assert all(all(s is None for s in spec) for k, spec in dp.items() if k.startswith(".params"))
    batch = golden["1x8x1"]["train_step"]["inputs"]["batch"]
    assert batch["['tokens']"] == [["data", "fsdp"], None]
  # Gemma 3's single KV head cannot be split over tensor; SmolLM2's 3 heads neither over 2.
  for preset in PRESETS:
    k_spec = load_golden(preset)["2x2x2"]["train_step"]["inputs"]["state"][
        ".params['layers']['k']"]
    assert k_spec == [None, "fsdp", None, None]


def regenerate() -> None:
  """Writes tests/parallel/golden/<preset>.json from the current code (all layouts)."""
  os.makedirs(GOLDEN_DIR, exist_ok=True)
  for preset in PRESETS:
    cfg = get_preset(preset)
    golden = {layout_name(l): {name: fn(cfg, l) for name, fn in PROGRAMS.items()}
              for l in LAYOUTS}
    with open(golden_path(preset), "w") as f:
      json.dump(golden, f, indent=1, sort_keys=True)
      f.write("\n")
    print(f"wrote {golden_path(preset)}")


if __name__ == "__main__":
  if sys.argv[1:] != ["--regenerate"]:
    sys.exit(f"usage: python {sys.argv[0]} --regenerate")
  regenerate()
