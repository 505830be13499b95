"""Secrets: what counts as one, the master key file, and the encrypted table.

Secret values are kept out of the event log: events carry their NAMES only (the spec's
``secrets`` map shows ``"<redacted>"``), the values live encrypted in Postgres.

    rules.py   what counts as a secret; splitting and redacting a spec (pure)
    keys.py    the master key file ``$STRATUS_HOME/secrets.key``
    store.py   the tables, written in the transaction of the event that names the secrets
    errors.py  the exception tree

Every process that needs the values (the provisioner) shares ``STRATUS_HOME`` or a copy of
the key file, and calls ``load_secrets(pool, service, version, home)``.
"""

from .errors import KeyFileError, SecretsError, SecretsStoreError, SecretUnreadable
from .keys import KEY_FILE_NAME, key_path, load_or_create_key
from .rules import REDACTED, SplitEnvs, looks_secret, redact_spec_dict, split_envs
from .store import ensure_schema, load_secrets, store_secrets

__all__ = [
    "KEY_FILE_NAME",
    "REDACTED",
    "KeyFileError",
    "SecretUnreadable",
    "SecretsError",
    "SecretsStoreError",
    "SplitEnvs",
    "ensure_schema",
    "key_path",
    "load_or_create_key",
    "load_secrets",
    "looks_secret",
    "redact_spec_dict",
    "split_envs",
    "store_secrets",
]
