"""``python -m services.api.cli``: the ``stratus`` command."""

from . import main

main()
