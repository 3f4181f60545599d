"""Helpers shared by the subcommands: common options, number parsing, output."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from typing import Any

from shapewise.errors import InputError

_SUFFIX = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}


def parse_count(text: str, *, field: str = "--params") -> float:
    """'2.7B' -> 2.7e9, '350M' -> 3.5e8, '1e9' -> 1e9. Errors name ``field``."""
    match = re.fullmatch(r"\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMbBgGtT]?)\s*",
                         text)
    if not match:
        raise InputError(f"{field}: cannot read {text!r} as a count (e.g. 2.7B, 350M, 1e9)")
    value = float(match.group(1)) * _SUFFIX[match.group(2).upper()]
    if not math.isfinite(value):
        raise InputError(f"{field}: {text!r} is not finite")
    if value <= 0:
        raise InputError(f"{field}: must be positive, got {text!r}")
    return value


def format_count(value: float) -> str:
    """2.7e9 -> '2.7B', 1e12 -> '1T', 3.5e8 -> '350M' (3 significant digits)."""
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def positive_int(field: str):
    """argparse type: a positive integer, errors naming ``field``."""
    return _positive(field, int, "a positive integer")


def add_counts(parser: Any, *options: tuple[Any, ...]) -> None:
    """Positive-integer options, each ``(flag, help)`` or ``(flag, help, default)`` (no
    default: None, not given); a bad value is an error naming the flag."""
    for flag, what, *default in options:
        parser.add_argument(flag, type=positive_int(flag), default=default[0] if default
                            else None, help=what)


#: --micro-batch of the commands that price a step of a model (estimate, recommend)
MICRO_BATCH_HELP = ("sequences (images for a ViT) per GPU per step (default: 1; a ViT 128, "
                    "DeiT's recipe)")
#: --seq-len of the commands that read a model (estimate, plan)
MODEL_SEQ_LEN_HELP = ("tokens per sequence; default: the model's context "
                      "(max_position_embeddings) capped at 4096; a ViT's follow from its image")


def positive_seconds(field: str):
    """argparse type: a positive, finite number of seconds, errors naming ``field``."""
    return _positive(field, float, "a positive number of seconds")


def _positive(field: str, parse: type, what: str):
    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"{field} must be {what}, got {text!r}")
        return value

    return convert


#: what a command that takes a shape accepts (every input of shapewise.model.load.load_shape)
SHAPE_INPUT_HELP = ("a Hugging Face config.json or model folder, Megatron-LM arguments "
                    "(.json), a nanoGPT .py config, the JSON of 'shapewise recommend --json' "
                    "(its best shape) or 'shapewise estimate --json', a ModelShape JSON, or a "
                    "preset name (e.g. llama-2-7b)")

#: --dtype of the commands that price a training step (estimate, recommend, check, tune)
TRAINING_DTYPE_HELP = ("training data type: bf16, fp16, tf32 or fp32 (weights, activations "
                       "and GEMMs; fp8 GEMMs: 'estimate --recipe'); default: bf16, else "
                       "fp16 (V100), else the profile's own (fp32 for a CPU profile)")

#: the data types ``dtype_for`` tries, in order, when --dtype is not given
DEFAULT_DTYPES = ("bf16", "fp16", "tf32", "fp32")

GPU_HELP = ("GPU name or alias, e.g. h100, a100, mi300x (see 'shapewise gpus'); "
            "no default: give --gpu or --profile")


PROFILE_HELP = ("a profile JSON file (e.g. from 'shapewise fit'); overrides --gpu's catalog "
                "entry; default: none (the catalog's profile of --gpu)")


def add_gpu_options(parser: argparse.ArgumentParser, *, required: bool = False,
                    dtype_help: str = "data type of the math; default: bf16, else fp16 (a GPU "
                    "without bf16), else the profile's own (fp32 for a CPU profile)",
                    gpu_help: str = GPU_HELP, profile_help: str = PROFILE_HELP) -> None:
    """``--gpu``, ``--profile`` and ``--dtype``, the hardware options every pricing command
    shares (each command words their help for what it does with them)."""
    parser.add_argument("--gpu", required=required, help=gpu_help)
    parser.add_argument("--profile", metavar="FILE", help=profile_help)
    parser.add_argument("--dtype", default=None, help=dtype_help)


def add_attention_backend_option(parser: argparse.ArgumentParser) -> None:
    """``--attention-backend``: the attention kernel to price (default: the config's, else
    PyTorch's SDPA dispatch)."""
    from shapewise.cost.attention import BACKENDS

    parser.add_argument(
        "--attention-backend", default=None, metavar="NAME",
        help=f"attention kernel to price: {', '.join(BACKENDS)} (default: the one the config "
             "states, e.g. HF attn_implementation, else what PyTorch's SDPA picks)")


def dtype_for(args: argparse.Namespace, gpu: Any) -> str:
    """``--dtype``, else the first of bf16, fp16, tf32, fp32 the GPU has: bf16 on most GPUs,
    fp16 on a V100, fp32 on a CPU profile fitted from fp32 timings."""
    if getattr(args, "dtype", None):
        return str(args.dtype)
    for dtype in DEFAULT_DTYPES:
        if dtype in gpu.peak_tflops:
            return dtype
    raise InputError(f"--dtype: {gpu.id} has none of {', '.join(DEFAULT_DTYPES)} "
                     f"(it has: {', '.join(sorted(gpu.peak_tflops))}); pass --dtype")


def resolve_hardware(args: argparse.Namespace) -> Any:
    """--profile, else --gpu as a GPU or system name (e.g. 'h100', 'frontier')."""
    from shapewise.hardware.catalog import load_profile
    from shapewise.plan import resolve_hardware as hardware

    if getattr(args, "profile", None):
        return load_profile(args.profile)
    if not getattr(args, "gpu", None):
        raise InputError("--gpu: required (a GPU or system name, or --profile FILE)")
    return hardware(args.gpu)[1]


def gpu_of(hw: Any) -> Any:
    """The GPU of what :func:`resolve_hardware` gave: a system's GPU, or the GPU itself."""
    return getattr(hw, "gpu", hw)


def resolve_gpu(args: argparse.Namespace):
    """The GPU for ``--gpu``/``--profile`` (``--profile`` wins): the GPU of
    :func:`resolve_hardware`, so a system name means its GPU."""
    return gpu_of(resolve_hardware(args))


def load_config(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The LoadedShape ``args.config`` names, with ``args.seq_len`` filled by the rule every
    command shares when not given (a text model; a ViT's is fixed); the note saying so."""
    from shapewise.model.load import load_shape
    from shapewise.model.run_defaults import default_seq_len

    loaded = load_shape(args.config)
    note = None
    if args.seq_len is None and loaded.shape.arch != "vit":
        args.seq_len, note = default_seq_len(loaded.shape)
    return loaded, note


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False, allow_nan=False)
    sys.stdout.write("\n")
