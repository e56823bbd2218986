"""The decoder-only transformer: config, parameters, forward pass, log-probabilities, KV cache."""

from bonjax.models.config import ModelConfig, get_preset, preset_names, register_preset
from bonjax.models.kv_cache import (CompletionCache, PromptCache, decode_step,
                                    init_completion_cache, prefill)
from bonjax.models.logprobs import (sequence_logprobs, tempered_log_softmax, token_logprobs)
from bonjax.models.transformer import (Params, cast_params, hidden_states, init_params,
                                       logits_from_hidden, param_logical_axes,
                                       positions_from_valid, transformer_forward)

__all__ = [
    "CompletionCache", "ModelConfig", "Params", "PromptCache", "cast_params", "decode_step",
    "get_preset", "hidden_states", "init_completion_cache", "init_params", "logits_from_hidden",
    "param_logical_axes", "positions_from_valid", "prefill", "preset_names", "register_preset",
    "sequence_logprobs", "tempered_log_softmax", "token_logprobs", "transformer_forward",
]
