"""Typed errors: one readable message per failure, a kind the worker sends on, an exit code."""

from __future__ import annotations


class NSTError(Exception):
    """A failure the user can act on. `kind` travels in the worker protocol."""

    kind = "internal"
    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class OptionError(NSTError):
    """field: the option the message is about (None: several or none), for front ends to point
    at their own field without reading the message."""

    kind = "bad_option"
    exit_code = 2

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class ImageError(NSTError):
    kind = "bad_image"
    exit_code = 3


class WeightsError(NSTError):
    kind = "weights"
    exit_code = 4


class DeviceError(NSTError):
    kind = "device"
    exit_code = 5


class TooLargeError(NSTError):
    kind = "too_large"
    exit_code = 6


class ProtocolError(NSTError):
    kind = "bad_request"
    exit_code = 7


class Cancelled(NSTError):
    kind = "cancelled"
    exit_code = 130
