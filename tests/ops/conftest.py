"""Ops tests reuse the API fixtures (in-process API on a real Postgres) and the e2e stack."""

from tests.api.conftest import api, live  # noqa: F401 (fixtures)
from tests.e2e.conftest import stack, stack_db  # noqa: F401 (fixtures)
