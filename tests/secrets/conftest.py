"""The API in-process (the fixture of tests/api) for the end-to-end secrets tests."""

from tests.api.conftest import api

__all__ = ["api"]
