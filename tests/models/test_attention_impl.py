"""model.attention_impl: the cuDNN fused kernel (GPU only) gives the einsum path's result."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.models import attention, transformer
from tests.models import model_fixtures as fx

# No attention soft-cap (cuDNN has none); GQA groups of 2, padding on the left.
CFG = fx.LLAMA_LIKE


def test_cudnn_is_refused_where_it_cannot_run():
  problems = attention.attention_impl_problems(CFG.replace(attention_impl="cudnn"), "cpu",
                                               "float32")
  assert problems == [
      "model.attention_impl='cudnn': the cuDNN fused attention kernel runs only on NVIDIA "
      "GPUs, this backend is 'cpu'; use 'xla'",
      "model.attention_impl='cudnn': needs model.compute_dtype='bfloat16' (cuDNN has no "
      "float32 kernel), not 'float32'"]
  gemma2 = attention.attention_impl_problems(
      fx.GEMMA_LIKE.replace(attention_impl="cudnn"), "gpu", "bfloat16")
  assert len(gemma2) == 1 and "attn_softcap=5.0" in gemma2[0]
  assert attention.attention_impl_problems(CFG, "cpu", "float32") == []


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN attention needs an NVIDIA GPU")
def test_cudnn_forward_equals_xla_forward():
  params = fx.random_params(CFG)
  tokens, valid = fx.left_padded_prompts([16, 9, 3, 12], 16, CFG.vocab_size)
  positions = transformer.positions_from_valid(jnp.asarray(valid))

  def hidden(cfg):
    h = transformer.hidden_states(params, cfg, jnp.asarray(tokens), positions,
                                  jnp.asarray(valid), compute_dtype=jnp.bfloat16)
    return np.asarray(h.astype(jnp.float32))[np.asarray(valid)]

  xla, cudnn = hidden(CFG), hidden(CFG.replace(attention_impl="cudnn"))
  assert np.all(np.isfinite(cudnn))
  np.testing.assert_allclose(cudnn, xla, rtol=0.05, atol=0.05)
