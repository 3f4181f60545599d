"""A shape read from a file, with the run settings that file states, and typo hints.

Every reader (:mod:`~shapewise.model.hf`, :mod:`~shapewise.model.megatron`,
:mod:`~shapewise.model.nanogpt`, the shapewise documents of :mod:`~shapewise.model.load`)
returns a :class:`LoadedShape`; :func:`shapewise.model.load.load_shape` is the one way in.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from shapewise.model.shape import ModelShape

Source = Literal["hf", "megatron", "nanogpt", "preset", "shape", "recommend", "estimate"]
#: how each source is named in reports
SOURCE_NAMES: dict[str, str] = {
    "hf": "Hugging Face config", "megatron": "Megatron-LM arguments",
    "nanogpt": "nanoGPT config", "preset": "preset", "shape": "ModelShape",
    "recommend": "shapewise recommend JSON", "estimate": "shapewise estimate JSON",
    "module": "traced nn.Module",
}

#: difflib similarity above which a key the reader did not ask for is taken for a typo of
#: one it asked for and did not find (n_heads/n_head 0.92, hiden_size/hidden_size 0.95);
#: high, so unrelated fields of a real config (rope_theta, attention_dropout) never match
TYPO_CUTOFF = 0.85


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedShape:
    """A shape read from a config or document, with the run settings it states."""

    shape: ModelShape
    source: Source
    """'hf', 'megatron', 'nanogpt', 'preset', 'shape' (a ModelShape or its to_dict),
    'recommend' or 'estimate' (the JSON those commands write)"""
    path: str = ""
    """the file read, or the preset name as given ('' for a dict or a ModelShape)"""
    tp: int | None = None
    """tensor-parallel size the input states (Megatron, a shapewise document)"""
    pipeline_stages: int | None = None
    micro_batch: int | None = None
    seq_len: int | None = None
    gpu: str | None = None
    """the GPU a shapewise document was computed for (informative: commands take --gpu)"""
    dtype: str | None = None
    """the data type a shapewise document was computed with"""
    attention_backend: str | None = None
    """the attention kernel the input states (``shapewise.cost.attention.BACKENDS`` id):
    HF ``attn_implementation``, Megatron ``--use-flash-attn`` / ``--attention-backend``;
    None: not stated, or the framework's default dispatch"""
    notes: tuple[str, ...] = field(default=())
    """assumptions made while reading (defaults taken, padding applied, likely typos)"""


#: Hugging Face ``attn_implementation`` -> attention backend (None: PyTorch's SDPA dispatch)
HF_ATTN_IMPLEMENTATIONS: dict[str, str | None] = {
    "flash_attention_2": "fa2", "flash_attention_3": "fa3", "sdpa": None,
    # transformers' eager attention materialises the scores like PyTorch's math path; it
    # keeps bf16 GEMMs where the math path upcasts, so pricing it so is pessimistic
    "eager": "sdpa-math",
}
#: Megatron-core ``--attention-backend`` (AttnBackend) -> attention backend: flash is
#: TransformerEngine's flash-attn path, fused its cuDNN path, unfused and local the
#: materialised one; auto lets TransformerEngine choose (None: priced as the default)
MEGATRON_ATTENTION_BACKENDS: dict[str, str | None] = {
    "flash": "fa2", "fused": "cudnn", "unfused": "sdpa-math", "local": "sdpa-math",
    "auto": None,
}


def stated_attention_backend(value: object, table: dict[str, str | None], key: str
                             ) -> tuple[str | None, str | None]:
    """(backend, note) for a config's stated attention kernel ``value`` under ``key``."""
    if value is None:
        return None, None
    name = str(value).removeprefix("AttnBackend.")
    if name in table:
        backend = table[name]
        return backend, (f"{key} {name}: priced as the {backend} attention backend"
                         if backend else None)
    return None, (f"{key} {value!r}: not an attention kernel shapewise models; priced as "
                  "PyTorch's default dispatch")


def did_you_mean(name: str, candidates: Iterable[str], *, cutoff: float = TYPO_CUTOFF
                 ) -> str | None:
    """The candidate closest to ``name`` (difflib), if it is close enough to be a typo."""
    close = difflib.get_close_matches(name, [str(c) for c in candidates], n=1, cutoff=cutoff)
    return close[0] if close else None


def missing(key: str, present: Iterable[str], why: str) -> str:
    """'n_head: missing (why); the config has 'n_heads': did you mean n_head?'."""
    typo = did_you_mean(key, [k for k in present if k != key])
    hint = f"; the config has {typo!r}: did you mean {key}?" if typo else ""
    return f"{key}: missing ({why}){hint}"


def typo_notes(present: Iterable[str], asked: Iterable[str]) -> list[str]:
    """A note for each field of the input that no reader asked for but that is one letter
    or two from a field it asked for and did not find: that field took its default."""
    present, asked = [str(k) for k in present], set(asked)
    absent = sorted(k for k in asked if k not in present)
    notes = []
    for key in present:
        if key in asked:
            continue
        meant = did_you_mean(key, absent)
        if meant is not None:
            notes.append(f"{key}: not a field this reader knows; did you mean {meant}? "
                         f"({meant} took its default)")
    return notes
