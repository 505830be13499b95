"""Errors of the runtime package (settings, the local stack, the supervisor).

    StratusRuntimeError
    └── SettingsError      an environment variable has a value that cannot be read (names it)

Each message names what is wrong and the value that was given.
"""

from __future__ import annotations


class StratusRuntimeError(Exception):
    """Base of every error raised by libs.runtime."""


class SettingsError(StratusRuntimeError, ValueError):
    """A setting's value cannot be read; the message names the variable and the value."""
