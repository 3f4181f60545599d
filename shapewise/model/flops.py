"""Training FLOPs of a shape: model FLOPs for MFU, hardware FLOPs with recompute.

Conventions (co-design.md §2), per token, per layer, forward; one multiply-add = 2 FLOPs:

    dense GEMMs   2 · (q: h·h + k, v: 2·h·g·d + o: h·h + MLP: 2·h·f GELU / 3·h·f SwiGLU)
                  each matrix by its real shape: GQA's K and V have g·d columns, SwiGLU three
    attention     QKᵀ 2·s·h + AV 2·s·h = 4·s·h (h = a·d: every query head attends);
                  causal: half of it, 2·s·h (only keys up to the query); sliding window w < s:
                  each query sees min(i, w) keys, 4·h·(w − w²/2s) per token, in the layers
                  the shape windows (``layer_types``: GPT-OSS and Gemma window some layers)
    output layer  logits 2·h·v per token with the vocabulary exactly as given (pad it with
                  ModelShape.padded_vocab first if the run pads); ViT: classifier 2·h·labels
                  per image, on the class token only
    embeddings    lookups are free; a ViT's patch embedding is a GEMM, 2·(C·p²)·h per patch

A mixture of experts counts what each token runs: the router (h·E), its k of E routed
experts, the shared experts and the dense layers' MLPs, so its dense part is 2 · N_active
(the active weight-matrix elements, :func:`gemm_macs_per_token`). Latent attention (MLA)
counts its down- and up-projections the same way; its QKᵀ is d_qk wide and its AV d_v wide,
2·s·a·(d_qk + d_v) per token non-causal.

Backward is twice the forward (Y = X·W needs dX = dY·Wᵀ and dW = Xᵀ·dY, each as large; the
two attention BMMs likewise), so model FLOPs are 3× forward: 6·N + attention for a dense
model. Biases, norms, activations and softmax are memory-bound and not counted, as usual.
The rule is applied to every GEMM, a ViT's patch embedding included (whose input-gradient
half no framework computes: 0.2% of ViT-B/16's training FLOPs), as the 6·N convention does.

Full activation recompute runs each layer's forward once more before its backward. That
is hardware work, reported as ``hardware_total``; MFU uses ``total`` (model FLOPs) so that
recompute never inflates it. The output layer and embeddings sit outside the checkpointed
layers and are not recomputed. (FlashAttention's own recompute of the scores inside its
backward kernel is not counted either: it is an implementation detail, not model work.)

>>> from shapewise.model.presets import get_preset
>>> f = flops_per_token(get_preset("llama-2-7b"), seq_len=4096)
>>> round(f["total"] / 1e9, 2)  # 6·(6.476e9 layer weights + 0.131e9 logits) + 3·32·2·4096²
42.86
"""

from __future__ import annotations

from shapewise.model.params import active_numel, param_tensors
from shapewise.model.shape import ModelShape, check_bool, check_int, resolve_seq_len

#: keys of the dicts returned here; the ``*_forward`` ones add up to ``forward``
PARTS = ("dense_forward", "attention_forward", "embedding_forward", "head_forward")


def gemm_macs_per_token(shape: ModelShape) -> int:
    """Multiply-adds per token of all layers' weight GEMMs: the active weight-matrix elements
    of the attention and MLP (a token runs k of E routed experts, and the router)."""
    return sum(p.layers * active_numel(shape, p) for p in param_tensors(shape)
               if p.matmul and p.category in ("attention", "mlp"))


def layer_gemm_macs_per_token(shape: ModelShape) -> int:
    """Multiply-adds per token of one layer's weight GEMMs (= its weight-matrix elements);
    for a mixture of experts or leading dense layers, the mean over layers."""
    return gemm_macs_per_token(shape) // shape.num_hidden_layers


def attention_forward_flops_per_sequence(shape: ModelShape, seq_len: int, *,
                                         causal: bool | None = None,
                                         windowed: bool | None = None) -> int:
    """QKᵀ and AV of one layer for one sequence of ``seq_len`` tokens, forward.

    Non-causal: 2 BMMs of 2·s·s·d per head, a heads: 4·s²·h. Causal: the masked upper
    triangle is skipped (FlashAttention skips those blocks), leaving exactly half: 2·s²·h.
    Causal with a sliding window w < s: query i sees min(i, w) keys, a triangle of w²/2
    then (s − w) rows of w: s·w − w²/2 keys in all, 4·h·(s·w − w²/2) FLOPs.

    ``windowed``: a layer with the shape's window (True) or a full-attention one (False);
    None: the mean over the shape's layers (:func:`attention_forward_flops_all_layers` / L,
    rounded down; exact when every layer is alike).
    """
    # QKᵀ is a·d_qk wide and AV a·d_v (equal but for MLA): 2·(q_size + v_size) = 4h
    h2, s = shape.q_size + shape.v_size, seq_len
    if not (shape.causal if causal is None else causal):
        return 2 * s * s * h2
    if windowed is None:
        return attention_forward_flops_all_layers(shape, s) // shape.num_hidden_layers
    w = shape.sliding_window if windowed else None
    if w is None or w >= s:
        return s * s * h2
    return 2 * h2 * s * w - h2 * w * w


def attention_forward_flops_all_layers(shape: ModelShape, seq_len: int, *,
                                       causal: bool | None = None) -> int:
    """:func:`attention_forward_flops_per_sequence` summed over the layers: the windowed
    ones (``ModelShape.window_layers``) with the window, the others in full."""
    n_w = shape.window_layers if (shape.causal if causal is None else causal) else 0
    n_f = shape.num_hidden_layers - n_w
    out = 0
    for windowed, n in ((True, n_w), (False, n_f)):
        if n:
            out += n * attention_forward_flops_per_sequence(shape, seq_len, causal=causal,
                                                            windowed=windowed)
    return out


def _forward_parts_per_sequence(shape: ModelShape, s: int, causal: bool | None) -> dict[str, int]:
    h = shape.hidden_size
    dense = 2 * s * gemm_macs_per_token(shape)
    attention = attention_forward_flops_all_layers(shape, s, causal=causal)
    if shape.arch == "vit":
        patch_in = shape.num_channels * shape.patch_size**2  # type: ignore[operator]
        embedding = 2 * shape.num_patches * patch_in * h
        head = 2 * h * shape.num_labels  # type: ignore[operator]  # one class token per image
        if shape.pooler:
            head += 2 * h * h
    else:
        embedding = 0  # a table lookup, no arithmetic
        head = 2 * s * h * shape.vocab_size  # type: ignore[operator]  # logits, tied or not
    return {"dense_forward": dense, "attention_forward": attention,
            "embedding_forward": embedding, "head_forward": head}


def step_flops(shape: ModelShape, *, micro_batch: int, seq_len: int | None = None,
               recompute: bool = False, causal: bool | None = None) -> dict[str, int]:
    """FLOPs of one training step on one micro-batch of ``micro_batch`` sequences.

    Keys: ``forward``, ``backward`` (2× forward), ``total`` (model FLOPs, use for MFU),
    ``recompute`` (the extra forward of the layers when ``recompute``, else 0),
    ``hardware_total`` (total + recompute), and the forward parts in :data:`PARTS`.
    ``seq_len`` is required for text models; a ViT's is fixed by its image and patches.
    ``causal`` overrides the shape's own masking (text: causal, ViT: not).
    """
    b = check_int("micro_batch", micro_batch)
    check_bool("recompute", recompute)
    if causal is not None:
        check_bool("causal", causal)
    s = resolve_seq_len(shape, seq_len)
    parts = {k: b * v for k, v in _forward_parts_per_sequence(shape, s, causal).items()}
    forward = sum(parts.values())
    extra = parts["dense_forward"] + parts["attention_forward"] if recompute else 0
    return {
        "forward": forward,
        "backward": 2 * forward,
        "total": 3 * forward,
        "recompute": extra,
        "hardware_total": 3 * forward + extra,
        **parts,
    }


def flops_per_token(shape: ModelShape, *, seq_len: int | None = None, recompute: bool = False,
                    causal: bool | None = None) -> dict[str, float]:
    """:func:`step_flops` for one sequence, divided by its ``seq_len`` tokens.

    For a dense decoder without biases ``total`` is 6·N_matmul + 3·attention, N_matmul the
    weight-matrix parameters including the output layer (tied or not: the logits GEMM runs).
    """
    step = step_flops(shape, micro_batch=1, seq_len=seq_len, recompute=recompute, causal=causal)
    s = resolve_seq_len(shape, seq_len)
    return {key: value / s for key, value in step.items()}
