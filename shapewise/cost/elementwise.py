"""Memory-bound operations (norms, activations, residual adds, softmax, dropout).

They do a handful of FLOPs per byte, far below any GPU's ridge point, so their time is the
bytes they must move over the bandwidth a streaming kernel sustains, plus one launch:

    t = bytes / (bandwidth · bandwidth_efficiency) + kernels · launch
"""

from __future__ import annotations

import math
import numbers

from shapewise.cost.defaults import calibration_of
from shapewise.errors import InputError
from shapewise.hardware.catalog import GPU, get_gpu

#: tensor passes (reads + writes of one activation tensor) per training-step op, forward
#: and backward. A pass is one read or one write of numel elements.
OP_PASSES: dict[str, tuple[int, int]] = {
    # op: (forward passes, backward passes)
    "layernorm": (2, 4),  # fwd: read x, write y; bwd: read x, dy, write dx (+ stats, small)
    "rmsnorm": (2, 4),
    "gelu": (2, 3),  # fwd: read x, write y; bwd: read x, dy, write dx
    "swiglu": (3, 5),  # fwd: read gate, up, write y; bwd: read gate, up, dy, write 2 grads
    "residual_add": (3, 2),  # fwd: read a, b, write y; bwd: gradient passes through (copy)
    "dropout": (3, 3),  # fwd: read x, write y and mask (1 byte/elem ~ counted as a pass)
    "softmax": (2, 3),
    "cross_entropy": (2, 2),  # over the logits: read, write grad
    "rotary": (2, 2),
    # fp8 recipes (shapewise/recipe.py): one pass whose bytes_per_element is what the
    # quantization moves per element (read bf16, write row- and column-wise fp8: 4; +2 for
    # current scaling's amax read)
    "fp8_quantize": (1, 1),
    # mixture of experts (shapewise/moe_ops.py): the router's fp32 softmax/sigmoid and top-k
    # over T·E scores (read, write; backward: read grad and probs, write grad)
    "router_topk": (2, 3),
    # copy each token's row to its k experts' contiguous buffers (read, write) and back:
    # the backward moves the gradients the same way
    "moe_permute": (2, 2),
    # gather the k expert outputs of each token and sum them weighted by the router
    # (read k rows, write one: counted as 2 passes over the T·k·h permuted elements)
    "moe_unpermute": (2, 3),
}


def memory_bound_time(nbytes: float, *, gpu: str | GPU, kernels: int = 1) -> float:
    """Seconds to stream ``nbytes`` through memory in ``kernels`` launches."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Real) or not math.isfinite(
            nbytes) or nbytes < 0:
        raise InputError(f"nbytes: must be a finite non-negative number, got {nbytes!r}")
    if isinstance(kernels, bool) or not isinstance(kernels, numbers.Integral) or kernels < 0:
        raise InputError(f"kernels: must be a non-negative integer, got {kernels!r}")
    g = get_gpu(gpu)
    cal = calibration_of(g)
    return float(nbytes) / (g.bandwidth * cal.bandwidth_efficiency) + kernels * cal.launch_us * 1e-6


def op_time(op: str, numel: int, *, gpu: str | GPU, bytes_per_element: int = 2,
            backward: bool = False) -> float:
    """Time of one memory-bound op over ``numel`` activation elements."""
    if op not in OP_PASSES:
        raise InputError(f"op: unknown memory-bound op {op!r}; known: {', '.join(OP_PASSES)}")
    passes = OP_PASSES[op][1 if backward else 0]
    return memory_bound_time(passes * numel * bytes_per_element, gpu=gpu)
