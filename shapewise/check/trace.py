"""Trace a live ``torch.nn.Module`` on the meta device: which GEMMs and attention calls it runs.

One forward and one backward pass run with every parameter, buffer and input replaced by a
meta tensor (shape and dtype, no storage): nothing is allocated, nothing runs on a GPU, and
the user's module is not modified (``torch.func.functional_call`` swaps the tensors in for
the call only). Two interposers watch the pass:

* a ``TorchDispatchMode`` sees the ATen ops after autograd and decomposition, and records
  every ``mm`` (m×k · k×n), ``addmm``, ``bmm`` and ``baddbmm`` (batch × m×k · k×n) as a
  :class:`TracedGemm`; ``nn.Linear`` on a (b, s, h) input reaches it as one (b·s)×h GEMM;
* a ``TorchFunctionMode`` sees ``F.scaled_dot_product_attention`` before it decomposes,
  records a :class:`TracedAttention` (batch, heads, sequence, head dim, ``is_causal``) and
  runs a shape-only stand-in, so attention is priced as one fused kernel (as FlashAttention
  runs it on the GPU) rather than as the batched GEMMs of the math fallback.

Forward hooks on every submodule name each forward GEMM after the innermost module running
it (``transformer.h.3.mlp.c_fc``); a backward GEMM takes the name of the forward GEMM it is
the gradient of (dX = dY·Wᵀ has shape (m, k, n), dW = Xᵀ·dY has (k, n, m) or (n, k, m)).
Layer indices are folded (``transformer.h.*.mlp.c_fc``) so the repeated layers of a model
show as one GEMM with a count.

torch is imported inside :func:`trace_module` only: the data classes below are plain Python,
so the rules that read a trace never import torch.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from shapewise.errors import InputError
from shapewise.model.run_defaults import DEFAULT_SEQ_LEN

Phase = Literal["forward", "backward"]

#: Sequence length traced when neither the caller nor the model's config states one.
DEFAULT_TRACE_SEQ_LEN = 1024
#: config attributes that give a model's trained context, in the order they are tried
_SEQ_LEN_ATTRS = ("max_position_embeddings", "n_positions", "block_size", "seq_length",
                  "max_seq_len")


@dataclass(frozen=True, slots=True)
class TracedGemm:
    """One GEMM shape the model ran, and how many times per step (summed over layers)."""

    name: str
    """innermost module that ran it, layer indices folded to '*' ('' outside any module)"""
    phase: Phase
    m: int
    """rows of the output (tokens for a linear layer)"""
    n: int
    """columns of the output (out features for a linear layer's forward)"""
    k: int
    """reduction dimension (in features for a linear layer's forward)"""
    batch: int = 1
    """independent products (bmm); 1 for mm/addmm"""
    count: int = 1
    """launches per step"""

    @property
    def flops(self) -> float:
        """2·batch·m·n·k per launch."""
        return 2.0 * self.batch * self.m * self.n * self.k


@dataclass(frozen=True, slots=True)
class TracedAttention:
    """One ``scaled_dot_product_attention`` shape and its launches per step."""

    name: str
    batch: int
    heads: int
    kv_heads: int
    seq_len: int
    seq_len_kv: int
    head_dim: int
    causal: bool
    count: int = 1


@dataclass(frozen=True, slots=True)
class Trace:
    """What one forward (and backward) pass of a module ran, grouped by name and shape."""

    model: str
    """the module's class name"""
    gemms: tuple[TracedGemm, ...]
    attentions: tuple[TracedAttention, ...]
    embeddings: tuple[tuple[str, int, int], ...] = ()
    """(module name, num_embeddings, embedding_dim) of every nn.Embedding"""
    backward: bool = True
    """the backward pass was traced (and attention backward is priced)"""
    micro_batch: int | None = None
    seq_len: int | None = None
    notes: tuple[str, ...] = field(default=())


_LAYER_INDEX = re.compile(r"(?<=\.)\d+(?=\.|$)|^\d+(?=\.)")


def fold_name(name: str) -> str:
    """'transformer.h.11.mlp.c_fc' -> 'transformer.h.*.mlp.c_fc' (layers share one row)."""
    return _LAYER_INDEX.sub("*", name)


def _group_gemms(raw: Sequence[tuple[str, Phase, int, int, int, int]]) -> tuple[TracedGemm, ...]:
    counts = Counter(raw)
    return tuple(TracedGemm(name, phase, m, n, k, b, c)
                 for (name, phase, m, n, k, b), c in counts.items())


def _name_backward(gemms: list[list[Any]]) -> None:
    """Give each unnamed backward GEMM the name of the forward GEMM it is a gradient of."""
    owner: dict[tuple[int, int, int, int], str] = {}
    forward = [(name, m, n, k, b) for name, phase, m, n, k, b in gemms if phase == "forward"]
    # torch computes dX = dY·Wᵀ as (m, k, n) and dW as dYᵀ·X, (n, k, m): exact matches first,
    # then Xᵀ·dY, (k, n, m), for kernels that compute the weight gradient the other way
    for name, m, n, k, b in forward:
        owner.setdefault((m, k, n, b), name)
        owner.setdefault((n, k, m, b), name)
    for name, m, n, k, b in forward:
        owner.setdefault((k, n, m, b), name)
    for g in gemms:
        if g[1] == "backward" and not g[0]:
            g[0] = owner.get((g[2], g[3], g[4], g[5]), "(backward)")


def _find_seq_len(model: Any) -> int | None:
    for holder in (getattr(model, "config", None), model):
        if holder is None:
            continue
        for attr in _SEQ_LEN_ATTRS:
            value = getattr(holder, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def _default_inputs(model: Any, torch: Any, micro_batch: int, seq_len: int) -> Any:
    """Token ids (micro_batch, seq_len) for a model with an embedding table (a language
    model); any other model must say what it takes."""
    if any(isinstance(m, torch.nn.Embedding) for m in model.modules()):
        return torch.zeros((micro_batch, seq_len), dtype=torch.long, device="meta")
    raise InputError(
        f"example_input: cannot guess what {type(model).__name__} takes (it has no "
        "nn.Embedding); pass example_input=, a tensor or a tuple/dict of tensors"
    )


def _to_meta(value: Any, torch: Any) -> Any:
    """The same structure with every tensor replaced by a meta tensor of its shape and dtype."""
    if isinstance(value, torch.Tensor):
        return torch.empty(value.shape, dtype=value.dtype, device="meta")
    if isinstance(value, tuple):
        return tuple(_to_meta(v, torch) for v in value)
    if isinstance(value, list):
        return [_to_meta(v, torch) for v in value]
    if isinstance(value, Mapping):
        return {k: _to_meta(v, torch) for k, v in value.items()}
    return value


def _first_tensor(value: Any, torch: Any) -> Any:
    """The first tensor of a model input (a tensor, a tuple/list, or a dict)."""
    if isinstance(value, torch.Tensor):
        return value
    items: Any = value.values() if isinstance(value, Mapping) else value
    if isinstance(items, tuple | list) or isinstance(value, Mapping):
        for v in items:
            if isinstance(v, torch.Tensor):
                return v
    return None


def _first_float(value: Any, torch: Any) -> Any:
    """The tensor to back-propagate from: `logits` / `loss` of a model output, else the first
    floating-point tensor found."""
    if isinstance(value, torch.Tensor):
        return value if value.is_floating_point() else None
    for attr in ("logits", "last_hidden_state", "loss"):
        inner = getattr(value, attr, None)
        if isinstance(inner, torch.Tensor) and inner.is_floating_point():
            return inner
    items: Any = value.values() if isinstance(value, Mapping) else value
    if isinstance(items, tuple | list) or isinstance(value, Mapping):
        for v in items:
            found = _first_float(v, torch)
            if found is not None:
                return found
    return None


def _dims(torch: Any, func: Any, args: tuple[Any, ...]) -> tuple[int, int, int, int] | None:
    """(m, n, k, batch) of a matmul ATen op, or None for any other op."""
    aten = torch.ops.aten
    packet = getattr(func, "overloadpacket", None)
    if packet is aten.mm:
        a, b = args[0], args[1]
        return a.shape[0], b.shape[1], a.shape[1], 1
    if packet is aten.addmm:
        a, b = args[1], args[2]
        return a.shape[0], b.shape[1], a.shape[1], 1
    if packet is aten.bmm:
        a, b = args[0], args[1]
        return a.shape[1], b.shape[2], a.shape[2], a.shape[0]
    if packet is aten.baddbmm:
        a, b = args[1], args[2]
        return a.shape[1], b.shape[2], a.shape[2], a.shape[0]
    return None


def trace_module(
    model: Any, *, micro_batch: int | None = None, seq_len: int | None = None,
    example_input: Any = None, backward: bool = True,
) -> Trace:
    """Run ``model`` once forward and backward on the meta device and record its kernels.

    ``example_input``: what ``model`` is called with (a tensor, a tuple of positional
    arguments, or a dict of keyword arguments; real tensors are replaced by meta tensors of
    the same shape and dtype), or a callable ``(micro_batch, seq_len) -> input``. Without
    it, a model with an ``nn.Embedding`` gets token ids of shape (micro_batch, seq_len);
    ``seq_len`` defaults to the model config's context (``max_position_embeddings``,
    ``n_positions``, ``block_size``) capped at 4096 as everywhere
    (:func:`shapewise.model.run_defaults.default_seq_len`), else 1024; ``micro_batch`` to 1.

    Raises :class:`InputError` when the module cannot be traced (with the reason).
    """
    import torch
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    if not isinstance(model, torch.nn.Module):
        raise InputError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    notes: list[str] = []
    b = 1 if micro_batch is None else micro_batch
    context = _find_seq_len(model)
    if seq_len is not None and context is not None and seq_len > context and any(
            isinstance(m, torch.nn.Embedding) and m.num_embeddings == context
            for m in model.modules()):
        raise InputError(f"seq_len: {seq_len} exceeds the model's context {context}: its "
                         f"{context}-row position table has no row for later tokens")
    s = seq_len if seq_len is not None else context
    if seq_len is None and context is not None and context > DEFAULT_SEQ_LEN:
        s = DEFAULT_SEQ_LEN  # the rule every command shares (model.run_defaults.default_seq_len)
        notes.append(f"seq_len {s}: the default (the model's context {context}, capped at "
                     f"{s}; pass seq_len= to change)")
    if s is None:
        s = DEFAULT_TRACE_SEQ_LEN
        notes.append(f"seq_len: {s} (assumed: the model states no context; pass seq_len=)")

    if callable(example_input) and not isinstance(example_input, torch.Tensor):
        example_input = example_input(b, s)
    if example_input is None:
        inputs = _default_inputs(model, torch, b, s)
        traced_b, traced_s = b, s
    else:
        inputs = _to_meta(example_input, torch)
        first = _first_tensor(inputs, torch)
        traced_b = traced_s = None
        if first is not None and first.dim() == 2 and not first.is_floating_point():
            traced_b, traced_s = int(first.shape[0]), int(first.shape[1])  # token ids
        elif first is not None and first.dim() == 3:
            traced_b, traced_s = int(first.shape[0]), int(first.shape[1])  # (b, s, h)
        elif first is not None and first.dim() >= 1:
            traced_b = int(first.shape[0])

    # meta stand-ins for every parameter and buffer: no storage, same shapes and dtypes
    params = {n: torch.empty(p.shape, dtype=p.dtype, device="meta",
                             requires_grad=p.requires_grad and backward)
              for n, p in model.named_parameters()}
    buffers = {n: torch.empty(t.shape, dtype=t.dtype, device="meta")
               for n, t in model.named_buffers()}
    embeddings = tuple((n, int(m.num_embeddings), int(m.embedding_dim))
                       for n, m in model.named_modules() if isinstance(m, torch.nn.Embedding))

    gemms: list[list[Any]] = []
    attentions: list[TracedAttention] = []
    stack: list[str] = []
    state = {"phase": "forward"}
    scalar_op = torch.ops.aten._local_scalar_dense.default
    assumed: list[bool] = []

    class _Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if func is scalar_op and args and args[0].dtype == torch.bool:
                # a data-dependent `if mask.all():` on a meta tensor has no data to read;
                # frameworks ask such questions to skip work in the common case (no padding,
                # no packed sequences), so answer as that case does
                if not assumed:
                    assumed.append(True)
                return True
            dims = _dims(torch, func, args)
            if dims is not None:
                phase = state["phase"]
                name = fold_name(stack[-1]) if phase == "forward" and stack else ""
                gemms.append([name, phase, *(int(x) for x in dims)])
            return func(*args, **(kwargs or {}))

    class _Attention(torch.autograd.Function):
        """Shape-only stand-in for fused attention: no math, no GEMMs recorded."""

        @staticmethod
        def forward(ctx, q, k, v):  # type: ignore[no-untyped-def]
            ctx.save_for_backward(q, k, v)
            return q.new_empty((*q.shape[:-1], v.shape[-1]))

        @staticmethod
        def backward(ctx, grad):  # type: ignore[no-untyped-def]
            q, k, v = ctx.saved_tensors
            return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)

    sdpa = torch.nn.functional.scaled_dot_product_attention

    class _SdpaRecorder(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            kwargs = kwargs or {}
            if func is sdpa:
                q, k, v = args[:3]
                causal = bool(kwargs.get("is_causal", args[5] if len(args) > 5 else False))
                if q.dim() == 4:
                    bq, heads, sq, d = (int(x) for x in q.shape)
                    kv_heads, skv = int(k.shape[1]), int(k.shape[2])
                else:  # (heads, s, d) or another rank: fold leading dims into the batch
                    heads, sq, d = (int(x) for x in q.shape[-3:])
                    bq = int(q.numel() // max(1, heads * sq * d))
                    kv_heads, skv = int(k.shape[-3]), int(k.shape[-2])
                attentions.append(TracedAttention(
                    fold_name(stack[-1]) if stack else "", bq, heads, kv_heads, sq, skv, d,
                    causal))
                return _Attention.apply(q, k, v)
            return func(*args, **kwargs)

    def _enter(name: str) -> Callable[..., None]:
        def hook(_module: Any, _args: Any) -> None:
            stack.append(name)
        return hook

    def _leave(_module: Any, _args: Any, _out: Any) -> None:  # must return None: keeps output
        if stack:
            stack.pop()

    handles = []
    for name, module in model.named_modules():
        if module is not model:
            handles.append(module.register_forward_pre_hook(_enter(name)))
            handles.append(module.register_forward_hook(_leave))
    try:
        with _SdpaRecorder(), _Recorder():
            if isinstance(inputs, Mapping):
                out = torch.func.functional_call(model, {**params, **buffers}, (),
                                                 dict(inputs))
            else:
                args = inputs if isinstance(inputs, tuple) else (inputs,)
                out = torch.func.functional_call(model, {**params, **buffers}, args)
            did_backward = False
            if backward:
                target = _first_float(out, torch)
                if target is not None and target.requires_grad:
                    state["phase"] = "backward"
                    target.sum().backward()
                    did_backward = True
                else:
                    notes.append("backward: not traced (the output has no gradient)")
    except InputError:
        raise
    except (RuntimeError, TypeError, ValueError, AttributeError, IndexError,
            NotImplementedError, AssertionError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputError(
            f"model: cannot trace {type(model).__name__} on the meta device "
            f"({type(exc).__name__}: {first_line[:300]}); pass example_input= matching its "
            f"forward, or build it under `with torch.device('meta'):`"
        ) from None
    finally:
        for h in handles:
            h.remove()

    if assumed:
        notes.append("data-dependent boolean checks (e.g. `mask.all()`) read as true: "
                     "no padding or packing assumed")
    _name_backward(gemms)
    grouped = _group_gemms([tuple(g) for g in gemms])  # type: ignore[misc]
    att_counts = Counter(attentions)
    atts = tuple(TracedAttention(a.name, a.batch, a.heads, a.kv_heads, a.seq_len,
                                 a.seq_len_kv, a.head_dim, a.causal, c)
                 for a, c in att_counts.items())
    if not grouped and not atts:
        notes.append("no GEMM or attention traced: nothing to check")
    return Trace(model=type(model).__name__, gemms=grouped, attentions=atts,
                 embeddings=embeddings, backward=did_backward, micro_batch=traced_b,
                 seq_len=traced_s, notes=tuple(notes))


def is_torch_module(obj: Any) -> bool:
    """True for a torch.nn.Module, checked without importing torch (a module object can only
    exist once torch is imported)."""
    module_type = getattr(getattr(sys.modules.get("torch"), "nn", None), "Module", None)
    return isinstance(module_type, type) and isinstance(obj, module_type)

