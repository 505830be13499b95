"""The API fixtures (an in-process API on a real Postgres, served by uvicorn) for the CLI tests."""

from tests.api.conftest import api, live

__all__ = ["api", "live"]
