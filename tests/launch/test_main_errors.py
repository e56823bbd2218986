"""Every bad command line is a named error with exit status 2, and writes nothing.

Each row runs `launch.main.run(argv)` in-process (the launcher's own entry point, flag parsing
included) with --workdir inside a fresh directory, and checks the exit status, the message on
stderr and that the directory holds exactly what it held before.
"""

import os

import pytest

from launch import main

# ml_collections loads config files with a deprecated importlib call.
pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")

# (extra arguments, message expected on stderr). {tmp} is the test's directory.
INVALID_COMMAND_LINES = [
    # The command line itself.
    (["--config.train.foo=1"], "--config.train.foo: unknown field 'foo' (config.train has: "
     "async_checkpoints, b1, b2, batch_size,"),
    (["--config.trian.num_steps=1"], "--config.trian.num_steps: unknown field 'trian' (config "
     "has: algorithm, eval,"),
    (["--config.train.num_steps.x=1"], "--config.train.num_steps.x: unknown field 'x' "
     "(config.train.num_steps has: no fields)"),
    (["--config=missing_experiment.py"], "--config: OSError: [Errno 2] No such file or directory: "
     "'missing_experiment.py'"),
    (["--config=experiments/smollm2_finetune.py:nope"], "--config=...:nope: unknown; known: "
     "['bon_rl_s', 'bon_rlb', 'pkpo', 'rl_s']"),
    (["--config.train.batch_size=abc"], "flag --config.train.batch_size=abc: invalid literal for "
     "int() with base 10: 'abc'"),
    (["--config.train.num_steps"], "Missing value for flag --config.train.num_steps"),
    (["--mode=bogus"], "flag --mode=bogus: value should be one of <train|eval|sample|export>"),
    (["--bogus_flag=1"], "Unknown command line flag 'bogus_flag'"),
    (["extra"], "unexpected arguments: ['extra']"),
    # Field rules.
    (["--config.train.learning_rate=inf"], "train.learning_rate=inf: must be a finite number"),
    (["--config.train.learning_rate=nan"], "train.learning_rate=nan: must be a finite number"),
    (["--config.eval.temperature=-inf"], "eval.temperature=-inf: must be a finite number"),
    (["--config.train.weight_decay=1e400"], "train.weight_decay=inf: must be a finite number"),
    (["--config.seed=-1"], "seed=-1: must be >= 0"),
    (["--config.task.seed=-5"], "task.seed=-5: must be >= 0"),
    (["--config.train.on_nonfinite=ignore"], "train.on_nonfinite='ignore': must be 'stop' or "
     "'skip'"),
    (["--config.train.num_steps=-1"], "train.num_steps=-1: must be >= 0"),
    (["--config.train.checkpoint_every=0"], "train.checkpoint_every=0: must be >= 1"),
    (["--config.train.keep_checkpoints=0"], "train.keep_checkpoints=0: must be >= 1"),
    (["--config.train.b2=1.0"], "train.b2=1.0: must be in [0, 1)"),
    (["--config.train.lr_schedule=step"], "train.lr_schedule='step': must be one of"),
    (["--config.sampling.num_samples=0"], "sampling.num_samples=0: must be >= 1"),
    (["--config.sampling.top_p=0"], "sampling.top_p=0.0: must be in (0, 1]"),
    (["--config.model.compute_dtype=float16"], "model.compute_dtype='float16': must be"),
    (["--config.eval.num_prompts=500"], "eval.num_prompts=500: must be <= task.num_test=200"),
    (["--config.lengths.prompt_buckets=()"], "lengths.prompt_buckets=(): must be a non-empty"),
    # Rules checked against the task, the tokenizer and the devices at start-up.
    (["--config.lengths.prompt_buckets=(4,)"], "lengths.prompt_buckets=(4,): the longest prompt "
     "(arithmetic/"),
    (["--config.lengths.completion_buckets=(2,)"], "lengths.completion_buckets=(2,): the longest "
     "gold answer (arithmetic/"),
    (["--config.task.num_train=100000"], "task.num_train=100000: the arithmetic task has 18057 "
     "distinct train problems"),
    (["--config.task.num_test=5000"], "task.num_test=5000: the arithmetic task has 1943 distinct "
     "test problems"),
    (["--config.task.num_digits=0"], "task.num_digits=0: must be >= 1"),
    (["--config.task.operators=+/"], "task.operators='+/'"),
    (["--config.task.operators=*", "--config.task.multiply_digits=0"],
     "task.multiply_digits=0: must be >= 1"),
    (["--config.task.name=chess"], "task.name='chess': unknown task"),
    (["--config.model.preset=gpt5"], "model.preset='gpt5': unknown preset"),
    (["--config.tokenizer.name=bpe9"], "tokenizer.name='bpe9': unknown tokenizer"),
    (["--config.train.batch_size=12"], "train.batch_size=12: must be divisible by the 8 batch "
     "shards"),
    (["--config.eval.prompt_batch_size=7"], "eval.prompt_batch_size=7: must be divisible"),
    (["--config.mesh.data=3"], "uses 3 devices but 8 are available"),
    (["--config.verifier.kind=oracle"], "verifier.kind='oracle': unknown verifier kind"),
    (["--config.verifier.kind=learned"], 'verifier.checkpoint="": verifier.kind="learned" needs'),
    # Found while building the run (after the workdir lock, which is given back and removed).
    (["--config.algorithm=nope"], "algorithm='nope'"),
    (["--config.init_from=pretrained:nope"], "init_from='pretrained:nope'"),
    (["--config.init_from={tmp}/no_such_run"], "no checkpoint under {tmp}/no_such_run/checkpoints"),
    # The workdir.
    (["--workdir={tmp}/a_file/run"], "--workdir={tmp}/a_file/run: {tmp}/a_file is a file, not a "
     "directory"),
    (["--mode=eval"], "no checkpoint under {tmp}/run/checkpoints; train first"),
    (["--mode=sample"], "no checkpoint under {tmp}/run/checkpoints; train first"),
]


def _listing(root) -> list[str]:
  return sorted(os.path.relpath(os.path.join(d, n), root)
                for d, dirs, files in os.walk(root) for n in dirs + files)


@pytest.mark.parametrize("args, message", INVALID_COMMAND_LINES,
                         ids=[" ".join(a) for a, _ in INVALID_COMMAND_LINES])
def test_invalid_command_line_is_a_named_error_and_writes_nothing(tmp_path, capsys, args,
                                                                  message):
  (tmp_path / "a_file").write_text("not a directory")
  before = _listing(tmp_path)
  args = [a.format(tmp=tmp_path) for a in args]
  workdir = [] if any(a.startswith("--workdir") for a in args) else [f"--workdir={tmp_path}/run"]
  # The quickstart evaluates 50 prompts per sampler call; the tests' 8 devices need 8.
  status = main.run(["launch.main", *workdir, "--config.eval.prompt_batch_size=8", *args])
  err = capsys.readouterr().err
  assert status == 2, err
  assert message.format(tmp=tmp_path) in err
  assert "Traceback" not in err
  assert _listing(tmp_path) == before


def test_help_lists_the_launcher_flags(tmp_path, capsys):
  assert main.run(["launch.main", "--helpfull", f"--workdir={tmp_path}/run"]) == 0
  out = capsys.readouterr().out
  assert "Exit status:" in out and "--[no]allow_config_change" in out and "--workdir" in out
  assert not os.listdir(tmp_path)
