"""The registry says which objectives train on the policy's samples (the loop and the run
set-up ask it instead of comparing names)."""

from bonjax.objectives import registry


def test_only_sft_trains_without_samples():
  assert [n for n in registry.REGISTRY if not registry.trains_on_samples(n)] == ["sft"]
  assert registry.REGISTRY["sft"].needs_samples is False
  assert registry.REGISTRY["bon_sft"].needs_samples is True  # Expert and samples both.


def test_an_unknown_name_counts_as_on_policy():
  assert registry.trains_on_samples("no_such_objective") is True
