"""Run settings a command assumes when none is given: sequence length and micro-batch.

One rule for every command and API (estimate, check, recommend, plan, report, the tracer),
printed in their output; and :func:`resolve_seq_len`, the sequence length a run uses.
"""

from __future__ import annotations

from shapewise.errors import InputError
from shapewise.model.shape import ModelShape, check_int

#: The sequence length every command and API assumes for a text model when none is given:
#: its context (max_position_embeddings) capped at this, the usual pre-training length;
#: longer contexts (Mistral's 32768, Qwen2's 131072) come from a later extension phase.
DEFAULT_SEQ_LEN = 4096


def default_seq_len(shape: ModelShape | None = None) -> tuple[int, str]:
    """The one default sequence length rule, and a sentence saying how it was reached.

    A ViT: its tokens, fixed by image and patch size. A text model: its context
    (``max_position_embeddings``) capped at :data:`DEFAULT_SEQ_LEN`. No model at all (a
    shape search): :data:`DEFAULT_SEQ_LEN`.

    >>> from shapewise.model.presets import get_preset
    >>> default_seq_len(get_preset("mistral-7b"))[0]
    4096
    """
    if shape is None:
        return DEFAULT_SEQ_LEN, (f"seq_len {DEFAULT_SEQ_LEN}: the default "
                                 "(pass --seq-len or seq_len= to change)")
    if shape.arch == "vit":
        return shape.seq_len, (f"seq_len {shape.seq_len}: the ViT's tokens "
                               "((image_size/patch_size)^2 + class token)")
    context = shape.max_position_embeddings
    if context is None or context > DEFAULT_SEQ_LEN:
        why = ("no max_position_embeddings" if context is None
               else f"max_position_embeddings {context}")
        return DEFAULT_SEQ_LEN, (f"seq_len {DEFAULT_SEQ_LEN}: the default ({why}, capped at "
                                 f"{DEFAULT_SEQ_LEN}; pass --seq-len or seq_len= to change)")
    return context, (f"seq_len {context}: the default (max_position_embeddings {context}; "
                     f"pass --seq-len or seq_len= to change)")


#: Micro-batch assumed when none is given, per architecture. A text model: 1 sequence (its
#: tokens come from the sequence length). A ViT: 128 images per GPU, DeiT's recipe (Touvron
#: et al., "Training data-efficient image transformers", ICML 2021: batch 1024 on one
#: 8-GPU node); ViTs train at 32-256 images per GPU, and one 197-token image is no batch.
DEFAULT_MICRO_BATCH = {"gpt": 1, "llama": 1, "vit": 128}


def default_micro_batch(shape: ModelShape | None = None, arch: str | None = None
                        ) -> tuple[int, str]:
    """The micro-batch a run assumes when none is given, and a sentence saying so."""
    kind = arch if arch is not None else shape.arch if shape is not None else "gpt"
    b = DEFAULT_MICRO_BATCH.get(kind, 1)
    if kind == "vit":
        return b, (f"micro_batch {b}: the default for a ViT (images per GPU, DeiT's 1024 on "
                   "8 GPUs; pass --micro-batch or micro_batch= to change)")
    return b, f"micro_batch {b}: the default (pass --micro-batch or micro_batch= to change)"


def resolve_seq_len(shape: ModelShape, seq_len: int | None) -> int:
    """The sequence length a run uses: required for text models, fixed for a ViT.

    A text model with learned positions cannot run past its table. A ViT's tokens follow
    from its image and patch sizes; to model another resolution, ``replace(image_size=...)``.
    """
    if shape.arch == "vit":
        if seq_len is not None and seq_len != shape.seq_len:
            raise InputError(
                f"seq_len: {seq_len!r} differs from this ViT's {shape.seq_len} tokens "
                f"((image_size/patch_size)^2 + class token); change image_size instead"
            )
        return shape.seq_len
    if seq_len is None:
        raise InputError("seq_len: required for a text model")
    s = check_int("seq_len", seq_len)
    if shape.position_embedding == "learned" and s > shape.max_position_embeddings:  # type: ignore[operator]
        raise InputError(
            f"seq_len: {s} exceeds max_position_embeddings {shape.max_position_embeddings} "
            f"(learned positions have no row for later tokens)"
        )
    return s
