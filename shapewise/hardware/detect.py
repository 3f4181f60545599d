"""Which GPU is this process running on? The only module of shapewise that asks torch.cuda.

ROCm builds of torch answer through the same ``torch.cuda`` API. An MI250X shows each of
its two GCDs as a separate device, so it maps to the ``mi250x-gcd`` profile (as Frontier
schedules it), not the two-GCD module.
"""

from __future__ import annotations

import importlib.util
import re

from shapewise.errors import InputError
from shapewise.hardware.catalog import GPU, get_gpu

# torch device-name patterns that need a specific profile (checked before the aliases)
_SPECIAL = ((re.compile(r"mi250", re.I), "mi250x-gcd"),)


def device_name(index: int = 0) -> str | None:
    """torch's name for GPU ``index``, or None without torch or without a GPU."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() <= index:
        return None
    return str(torch.cuda.get_device_name(index))


def gpu_from_name(name: str) -> GPU | None:
    """The catalog profile for a torch device name, or None if none matches."""
    for pattern, gid in _SPECIAL:
        if pattern.search(name):
            return get_gpu(gid)
    try:
        return get_gpu(name)
    except InputError:
        return None


def detect_gpu(index: int = 0) -> GPU | None:
    """The catalog profile of the visible GPU ``index``; None if no GPU or no match."""
    name = device_name(index)
    return None if name is None else gpu_from_name(name)
