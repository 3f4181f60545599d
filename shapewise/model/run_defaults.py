"""The run settings every command and API assumes when none is given: one rule each.

The sequence length of a text model is its context capped at :data:`DEFAULT_SEQ_LEN`; a
ViT's is fixed by its image. The micro-batch is one sequence for a text model and a batch
of images for a ViT. Each function returns the value and a sentence saying how it was
reached, which the commands print.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: shape.py imports this module
    from shapewise.model.shape import ModelShape

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
