"""Model shapes and the arithmetic on them: parameters, FLOPs, memory. No torch here.

>>> from shapewise.model import count_params, get_preset
>>> count_params(get_preset("gpt2"))
124439808
"""

from __future__ import annotations

from shapewise.model.flops import flops_per_token, step_flops
from shapewise.model.hf import SUPPORTED_MODEL_TYPES, from_hf_config
from shapewise.model.load import load_shape
from shapewise.model.loaded import LoadedShape
from shapewise.model.memory import activation_bytes_per_layer, memory_per_gpu
from shapewise.model.params import count_params, param_breakdown, param_tensors
from shapewise.model.presets import PRESETS, get_preset, list_presets
from shapewise.model.shape import ModelShape

__all__ = [
    "PRESETS",
    "SUPPORTED_MODEL_TYPES",
    "LoadedShape",
    "ModelShape",
    "activation_bytes_per_layer",
    "count_params",
    "flops_per_token",
    "from_hf_config",
    "get_preset",
    "list_presets",
    "load_shape",
    "memory_per_gpu",
    "param_breakdown",
    "param_tensors",
    "step_flops",
]
