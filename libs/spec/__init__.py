"""The service spec: SkyServe's service YAML, parsed, validated and normalized.

    load_spec(text, env_overrides=..., source=...) -> ServiceSpec
    load_spec_file(path, env_overrides=None)       -> ServiceSpec
    spec_to_dict(spec, include_secrets=False)      -> dict   (the JSON form events carry)
    spec_from_dict(d)                              -> ServiceSpec (strict: must be valid)
    decode_recorded_spec(d)                        -> ServiceSpec (lenient: a recorded event's spec)
    parse_env_overrides(["K=V", ...])              -> dict
    parse_env_file(text)                           -> dict   (a dotenv file, ``--env-file``)
    apply_overrides(text, resources=..., secrets=...) -> text (``--cloud``, ``--gpus``, ``--secret``)
    check_launchable(spec)                         -> ServiceSpec, or a SpecValidationError naming
                                                      what no provider can launch (num_nodes > 1)

Every failure is a ``SpecError`` (see ``errors``) listing all problems by field path.
"""

from __future__ import annotations

from .codec import spec_from_dict, spec_to_dict
from .envs import parse_env_file, parse_env_overrides
from .errors import (
    EnvOverrideError,
    Issue,
    SpecError,
    SpecFileError,
    SpecSyntaxError,
    SpecValidationError,
)
from .launch import check_launchable, launch_issues
from .model import ReadinessProbe, ResourceCandidate, Resources, ServiceSection, ServiceSpec, Tls
from .overrides import apply_overrides
from .parse import load_spec, load_spec_file, read_spec_text
from .recorded import decode_recorded_spec
from .summary import describe_resources, describe_service

__all__ = [
    "EnvOverrideError",
    "Issue",
    "ReadinessProbe",
    "ResourceCandidate",
    "Resources",
    "ServiceSection",
    "ServiceSpec",
    "SpecError",
    "SpecFileError",
    "SpecSyntaxError",
    "SpecValidationError",
    "Tls",
    "apply_overrides",
    "check_launchable",
    "decode_recorded_spec",
    "describe_resources",
    "describe_service",
    "launch_issues",
    "load_spec",
    "load_spec_file",
    "parse_env_file",
    "parse_env_overrides",
    "read_spec_text",
    "spec_from_dict",
    "spec_to_dict",
]
