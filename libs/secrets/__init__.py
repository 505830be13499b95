"""Secrets: what counts as one, the master key file, and the encrypted table.

Secret values are kept out of the event log: events carry their NAMES only (the spec's
``secrets`` map shows ``"<redacted>"``), the values live encrypted in Postgres.

    rules.py   what counts as a secret (the documented rule); splitting and redacting a spec (pure)
    keys.py    the master key file ``$STRATUS_HOME/secrets.key`` (a keyring, primary first)
    store.py   a data key per service (encrypted by the master key) and the values it encrypts,
               written in the transaction of the event that names the secrets; purge
    rotate.py  re-encrypting the data keys under a new master key (``python -m libs.secrets rotate``)
    errors.py  the exception tree

Every process that needs the values (the provisioner) shares ``STRATUS_HOME`` or a copy of
the key file, and calls ``load_secrets(pool, service, version, home)`` (the prober:
``load_probe_headers``).
"""

from .errors import KeyFileError, SecretsError, SecretsStoreError, SecretUnreadable
from .keys import KEY_FILE_NAME, key_path, load_or_create_key, load_or_create_keys, master_keyring
from .rotate import Rotation, rotate_master_key
from .rules import (
    REDACTED,
    SplitEnvs,
    is_secret_env,
    looks_secret,
    looks_secret_value,
    redact_spec_dict,
    split_envs,
)
from .store import (
    ensure_schema,
    load_probe_headers,
    load_secrets,
    purge_service,
    service_data_key,
    store_secrets,
)

__all__ = [
    "KEY_FILE_NAME",
    "REDACTED",
    "KeyFileError",
    "Rotation",
    "SecretUnreadable",
    "SecretsError",
    "SecretsStoreError",
    "SplitEnvs",
    "ensure_schema",
    "is_secret_env",
    "key_path",
    "load_or_create_key",
    "load_or_create_keys",
    "load_probe_headers",
    "load_secrets",
    "looks_secret",
    "looks_secret_value",
    "master_keyring",
    "purge_service",
    "redact_spec_dict",
    "rotate_master_key",
    "service_data_key",
    "split_envs",
    "store_secrets",
]
