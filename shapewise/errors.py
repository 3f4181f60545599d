"""Errors and warnings shared by every part of shapewise."""

from __future__ import annotations


class InputError(ValueError):
    """Unusable input: a bad argument, field, file or value.

    The message always names the argument, field or file at fault, so the CLI can print it
    as its one-line error (exit code 2).
    """


class ShapewiseWarning(UserWarning):
    """A shape finding raised as a warning (filter with ``warnings.filterwarnings``)."""
