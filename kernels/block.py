"""Real torch layers of a :class:`ModelShape`, built to be timed: one transformer block and
the model's head, forward plus backward.

``shapewise tune`` measures candidate shapes with these (``shapewise.tune``). The block is
the layer that :mod:`shapewise.step` prices, kernel for kernel, for one tensor-parallel rank
(Megatron layout: whole heads and K/V groups, FFN columns and vocabulary rows split by
``tp``; the all-reduces are left out, since one GPU has no peer to reduce with):

=========  ================================================================================
family     block (pre-norm; x: (b, s, h))
=========  ================================================================================
gpt        LayerNorm (bias) → QKV (bias) → SDPA causal → out proj (bias) → + x;
           LayerNorm → up (h → f/t, bias) → GELU (tanh) → down (f/t → h, bias) → + x
llama      RMSNorm → QKV (qkv_bias) → rotary on q, k → SDPA causal, GQA → out proj → + x;
           RMSNorm → gate+up fused (h → 2f/t) → SiLU(gate)·up → down (f/t → h) → + x
vit        as gpt, attention not causal, tokens = (image/patch)² + class token
=========  ================================================================================

``parallel_residual`` (GPT-NeoX) adds both branches to the same input. A sliding window is
not applied: SDPA has no native window, and a mask would change which kernel runs.

The head is what runs once per step after the last block: the final norm, the logits GEMM
(h → v/t) and the cross-entropy over float32 logits (text); the final norm and the
classifier on the class token (ViT). Embedding lookups are not built (memory-bound, a few
microseconds).

Backward is ``torch.autograd.grad`` with respect to the input and every parameter: the
input gradient is what a block in the middle of a stack passes down, and ``grad`` returns
the weight gradients without accumulating them into ``.grad`` (one extra add per weight
that training's first micro-batch does not pay).

Only imported when a measurement runs: it imports torch at the top. (It was
``shapewise/bench/layers.py``; a kernel that the tuner times belongs with the kernels.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from shapewise.errors import InputError
from shapewise.model.shape import ModelShape

from . import torch_dtype
from .timing import time_fn

#: rotary base frequency (Llama's ``rope_theta``); it changes no cost, only the values
ROPE_THETA = 10000.0


def _shard(shape: ModelShape, tp: int) -> tuple[int, int, int]:
    """(query heads, K/V heads, FFN width) of one tensor-parallel rank."""
    for name, value in (("num_attention_heads", shape.num_attention_heads),
                        ("num_key_value_heads", shape.kv_heads),
                        ("intermediate_size", shape.ffn_size)):
        if value % tp:
            raise InputError(f"tp: {tp} does not divide {name} ({value})")
    return shape.num_attention_heads // tp, shape.kv_heads // tp, shape.ffn_size // tp


def _norm(shape: ModelShape) -> nn.Module:
    if shape.norm == "rmsnorm":
        return nn.RMSNorm(shape.hidden_size, eps=1e-5)
    return nn.LayerNorm(shape.hidden_size, eps=1e-5, bias=bool(shape.bias))


def rotary_tables(seq_len: int, rot_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each (seq_len, rot_dim), for the first ``rot_dim`` dims of a head
    (GPT-NeoX layout: the two halves of the rotated dims form the pairs)."""
    inv = 1.0 / ROPE_THETA ** (torch.arange(0, rot_dim, 2, dtype=torch.float64) / rot_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv)  # (s, rot/2)
    angles = torch.cat([angles, angles], dim=-1)  # (s, rot)
    return angles.cos().float(), angles.sin().float()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding on the first cos.shape[-1] dims of x (b, heads, s, d)."""
    r = cos.shape[-1]
    xr, xp = x[..., :r], x[..., r:]
    x1, x2 = xr.chunk(2, dim=-1)
    rotated = xr * cos + torch.cat([-x2, x1], dim=-1) * sin
    return torch.cat([rotated, xp], dim=-1) if xp.shape[-1] else rotated


class Block(nn.Module):
    """One transformer block of ``shape`` as one tensor-parallel rank holds it."""

    def __init__(self, shape: ModelShape, *, seq_len: int, tp: int = 1) -> None:
        super().__init__()
        a, g, f = _shard(shape, tp)
        h, d = shape.hidden_size, shape.head_dim
        self.heads, self.kv_heads, self.head_dim = a, g, d
        self.causal = shape.causal
        self.parallel_residual = bool(shape.parallel_residual)
        self.swiglu = shape.activation == "swiglu"
        self.norm1, self.norm2 = _norm(shape), _norm(shape)
        self.qkv = nn.Linear(h, (a + 2 * g) * d, bias=bool(shape.qkv_bias))  # column-parallel
        self.out = nn.Linear(a * d, h, bias=bool(shape.bias))  # row-parallel
        self.up = nn.Linear(h, (2 if self.swiglu else 1) * f, bias=bool(shape.mlp_bias))
        self.down = nn.Linear(f, h, bias=bool(shape.mlp_bias))
        rot = 0
        if shape.arch != "vit" and shape.position_embedding == "rotary":
            rot = 2 * (int(d * shape.rotary_pct) // 2)
        cos, sin = rotary_tables(seq_len, rot) if rot else (torch.empty(0), torch.empty(0))
        self.rot = rot
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        a, g, d = self.heads, self.kv_heads, self.head_dim
        q, k, v = self.qkv(x).split([a * d, g * d, g * d], dim=-1)
        q = q.view(b, s, a, d).transpose(1, 2)  # (b, a, s, d)
        k = k.view(b, s, g, d).transpose(1, 2)  # (b, g, s, d)
        v = v.view(b, s, g, d).transpose(1, 2)
        if self.rot:
            cos, sin = self.cos[:s].to(q.dtype), self.sin[:s].to(q.dtype)
            q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        y = sdpa(q, k, v, causal=self.causal)  # (b, a, s, d)
        return self.out(y.transpose(1, 2).reshape(b, s, a * d))

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        u = self.up(x)
        if self.swiglu:
            gate, up = u.chunk(2, dim=-1)
            u = F.silu(gate) * up
        else:
            u = F.gelu(u, approximate="tanh")  # GPT-2's gelu_new
        return self.down(u)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.parallel_residual:
            return x + self.attention(self.norm1(x)) + self.mlp(self.norm2(x))
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool) -> torch.Tensor:
    """Scaled dot-product attention; K/V with fewer heads than Q are shared by groups."""
    if k.shape[1] == q.shape[1]:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    try:  # torch >= 2.5: the fused kernels read each K/V head once per group
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    except TypeError:  # older torch: materialise the shared heads
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


class Head(nn.Module):
    """What runs once per step after the last block: final norm, then the vocab-parallel
    logits and cross-entropy (text) or the classifier on the class token (ViT)."""

    def __init__(self, shape: ModelShape, *, tp: int = 1) -> None:
        super().__init__()
        self.vit = shape.arch == "vit"
        self.norm = _norm(shape)
        h = shape.hidden_size
        if self.vit:
            n = int(shape.num_labels or 0)
            self.proj = nn.Linear(h, n, bias=bool(shape.bias)) if n else None
            self.classes = n
        else:
            v = int(shape.vocab_size or 0)
            if v % tp:
                raise InputError(f"tp: {tp} does not divide vocab_size ({v})")
            self.proj = nn.Linear(h, v // tp, bias=False)
            self.classes = v // tp

    def forward(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Loss for x (b, s, h); targets (b, s) token ids (text) or (b,) labels (ViT)."""
        y = self.norm(x)
        if self.proj is None:  # a ViT backbone without a classifier
            return y.float().square().mean()
        if self.vit:
            y = y[:, 0]  # the class token
        logits = self.proj(y).float()  # the softmax in fp32, as the cost model prices it
        return F.cross_entropy(logits.reshape(-1, self.classes), targets.reshape(-1))


@dataclass(frozen=True, slots=True)
class Workload:
    """A module and its inputs on a device, ready to time: ``step()`` runs forward plus
    backward once; ``refresh()`` redraws the inputs in place."""

    step: Callable[[], Any]
    refresh: Callable[[], None]
    module: nn.Module
    tokens: int
    """micro_batch · seq_len tokens per call"""


def block_workload(shape: ModelShape, *, micro_batch: int, seq_len: int, tp: int = 1,
                   device: str = "cpu", dtype: str = "fp32", seed: int = 0) -> Workload:
    """One block of ``shape`` with a random (micro_batch, seq_len, hidden) input.

    >>> s = ModelShape.llama(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
    ...                      num_hidden_layers=2, intermediate_size=128, vocab_size=100)
    >>> w = block_workload(s, micro_batch=2, seq_len=16)
    >>> w.step(); w.tokens
    32
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    dt = torch_dtype(dtype)
    dev = torch.device(device)
    block = Block(shape, seq_len=seq_len, tp=tp).to(device=dev, dtype=dt)
    shape_x = (micro_batch, seq_len, shape.hidden_size)
    x = torch.randn(shape_x, generator=gen).to(device=dev, dtype=dt).requires_grad_(True)
    dy = torch.randn(shape_x, generator=gen).to(device=dev, dtype=dt)
    wrt = [x, *block.parameters()]

    def step() -> None:
        y = block(x)
        torch.autograd.grad(y, wrt, grad_outputs=dy)

    def refresh() -> None:
        with torch.no_grad():
            x.normal_()
            dy.normal_()

    return Workload(step, refresh, block, micro_batch * seq_len)


def head_workload(shape: ModelShape, *, micro_batch: int, seq_len: int, tp: int = 1,
                  device: str = "cpu", dtype: str = "fp32", seed: int = 0) -> Workload:
    """The head of ``shape`` on a random last hidden state, with random targets."""
    gen = torch.Generator().manual_seed(seed + 1)
    torch.manual_seed(seed + 1)
    dt = torch_dtype(dtype)
    dev = torch.device(device)
    head = Head(shape, tp=tp).to(device=dev, dtype=dt)
    x = torch.randn(micro_batch, seq_len, shape.hidden_size, generator=gen)
    x = x.to(device=dev, dtype=dt).requires_grad_(True)
    n = max(1, head.classes)
    t_shape = (micro_batch,) if head.vit else (micro_batch, seq_len)
    targets = torch.randint(0, n, t_shape, generator=gen).to(dev)
    wrt = [x, *head.parameters()]

    def step() -> None:
        torch.autograd.grad(head(x, targets), wrt)

    def refresh() -> None:
        with torch.no_grad():
            x.normal_()
            targets.random_(0, n)

    return Workload(step, refresh, head, micro_batch * seq_len)


@dataclass(frozen=True, slots=True)
class StepTiming:
    """One repeat of a candidate's measurement: a block and the head, each timed apart."""

    block_s: float
    """median forward + backward of one block, seconds"""
    block_spread_s: float
    """interquartile range of the block's timed calls, seconds"""
    head_s: float
    """median forward + backward of the head, seconds"""
    n_runs: int
    """timed calls of the block"""
    method: str


def step_timings(shape: ModelShape, *, micro_batch: int, seq_len: int, tp: int, device: str,
                 dtype: str, repeats: int, config: Any = None,
                 seed: int = 0) -> Iterator[StepTiming]:
    """Yield ``repeats`` timings of one block and the head (one of each per repeat).

    Each repeat is a whole measurement by ``shapewise.kernels.timing.time_fn`` (warm-up,
    device events, fresh inputs and an L2 flush before every call on a GPU; median), so the
    repeats' spread shows how stable the device is. Stop iterating to abandon the rest
    (a pruned candidate): the layers are freed with the generator.
    """
    if repeats < 1:
        raise InputError(f"repeats: must be at least 1, got {repeats}")
    block = block_workload(shape, micro_batch=micro_batch, seq_len=seq_len, tp=tp,
                           device=device, dtype=dtype, seed=seed)
    head = head_workload(shape, micro_batch=micro_batch, seq_len=seq_len, tp=tp,
                         device=device, dtype=dtype, seed=seed)
    for _ in range(repeats):
        tb = time_fn(block.step, device=device, refresh=block.refresh, config=config)
        th = time_fn(head.step, device=device, refresh=head.refresh, config=config)
        if not (math.isfinite(tb.median_s) and tb.median_s > 0):
            raise RuntimeError(f"timing returned {tb.median_s!r} s for a block")
        yield StepTiming(tb.median_s, tb.spread_s, th.median_s, tb.n_runs, tb.method)
