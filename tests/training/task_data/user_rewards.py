"""Reward functions for the `task.reward="python:..."` tests (TRL's convention)."""


def every_other_unscored(prompts, completions, answer, **columns):
  """0.5 for even positions, None (could not score) for odd ones."""
  assert len(prompts) == len(completions) == len(answer)
  assert "split" in columns and "prompt" not in columns
  return [None if i % 2 else 0.5 for i in range(len(completions))]


def answer_length(prompts, completions, answer, **columns):
  """1.0 when the completion is as long as the gold answer, else a fraction."""
  del prompts, columns
  return [min(len(c), len(a)) / max(len(c), len(a), 1) for c, a in zip(completions, answer)]


def broken(prompts, completions, **columns):
  raise RuntimeError("the reward server is down")


def wrong_length(prompts, completions, **columns):
  return [1.0]


def not_numbers(prompts, completions, **columns):
  return ["high"] + [float("nan")] + [1] * (len(completions) - 2)
