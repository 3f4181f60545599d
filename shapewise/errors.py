"""Errors and warnings shared by every part of shapewise."""

from __future__ import annotations


class InputError(ValueError):
    """Unusable input: a bad argument, field, file or value.

    The message always names the argument, field or file at fault, so the CLI can print it
    as its one-line error (exit code 2).
    """


class DeviceFailure(RuntimeError):
    """The GPU reported an error that leaves its context unusable (an illegal memory access,
    a device-side assert): a measurement stopped, keeping what it had measured. The CLI
    prints it as one line and exits 3. ``record``: what to save for the measurement that
    failed (so that a resume goes on past it), when there is one."""

    def __init__(self, message: str, record: dict | None = None) -> None:
        super().__init__(message)
        self.record = record


class ShapewiseWarning(UserWarning):
    """A shape finding raised as a warning (filter with ``warnings.filterwarnings``)."""
