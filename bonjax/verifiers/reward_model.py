"""How well a learned verifier (or any score) tells right completions from wrong ones.

The learned verifier itself is split by layer: its network in `bonjax.models.reward_model`,
its input encoding in `bonjax.data.batching.encode_pairs`, its training in
`bonjax.training.reward_model`, and scoring / loading as `verifier.kind = "learned"` in
`bonjax.training.learned_verifier`.
"""

from __future__ import annotations

import numpy as np


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
  """Area under the ROC curve: P(score of a random positive > that of a random negative),
  ties counting one half (the Mann-Whitney U statistic over n_pos * n_neg).

  Args:
    scores: [n] real scores.
    labels: [n] booleans (True = positive).

  Returns:
    the AUC in [0, 1], or None when either class is absent (AUC undefined).
  """
  scores = np.asarray(scores, dtype=np.float64).ravel()
  labels = np.asarray(labels, dtype=bool).ravel()
  if scores.shape != labels.shape:
    raise ValueError(f"scores has {scores.size} entries but labels {labels.size}")
  num_pos, num_neg = int(labels.sum()), int((~labels).sum())
  if num_pos == 0 or num_neg == 0:
    return None
  # Average 1-based ranks, tied scores sharing the mean of their rank range.
  unique, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
  ends = np.cumsum(counts)
  mean_rank = ends - (counts - 1) / 2.0
  ranks = mean_rank[inverse]
  return float((ranks[labels].sum() - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg))


def within_prompt_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
  """Mean over prompts of the AUC among each prompt's own samples: what Best-of-N selection
  depends on (a score that only tells easy prompts from hard ones has a high pooled AUC but
  0.5 here). Prompts whose samples are all right or all wrong are left out.

  Args:
    scores: [B, n] scores.
    labels: [B, n] booleans.

  Returns:
    the mean, or None when no prompt has both classes.
  """
  per_prompt = [a for a in (roc_auc(s, y) for s, y in zip(scores, labels)) if a is not None]
  return float(np.mean(per_prompt)) if per_prompt else None
