"""Exceptions of the router package.

::

    RouterError                      base of everything the router raises
    ├── ConfigError (ValueError)     bad argument from the owner: unknown policy,
    │   │                            malformed upstream URL or option
    │   ├── UnknownPolicy
    │   └── InvalidUpstreamURL
    ├── UnknownService (KeyError)    Router.pool()/endpoint()/remove_service() of
    │                                a service that was never added
    ├── UpstreamConnectError         opening a connection to a replica failed
    │                                (refused, unreachable, timed out); nothing
    │                                was sent, so the request may be retried
    └── ProxyError                   a request could not be proxied; rendered to
        │                            the client as ``{"error": message}`` with
        │                            ``status``
        ├── BadRequest        400    unparsable request
        ├── Unauthorized      401    endpoint API key missing or not valid
        ├── RequestTimeout    408    request head or body not received in time
        ├── UriTooLong        414    request target over the limit
        ├── HeadersTooLarge   431    request head (size or field count) over the limit
        ├── UpgradeNotSupported 501  CONNECT, or an Upgrade request with a body
        ├── NoReadyReplica    503    no replica is ready for the service
        │   ├── HoldQueueFull 503    hold-when-empty queue full
        │   └── HoldTimeout   503    held for ``max_wait`` and still none ready
        ├── UpstreamFailed    502    every attempt failed, or the upstream broke
        │                            the protocol / closed before answering
        └── UpstreamTimeout   504    no response head within the timeout

Proxy errors are mostly *constructed* (to render a response) rather than
raised on the hot path; they are exceptions so that owners and tests can
handle them like any other failure.
"""

from __future__ import annotations


class RouterError(Exception):
    """Base class of all router errors."""


class ConfigError(RouterError, ValueError):
    """An invalid argument given by the owner of the router."""


class UnknownPolicy(ConfigError):
    """A load-balancing policy name that does not exist."""


class InvalidUpstreamURL(ConfigError):
    """An upstream URL that is neither ``http://host:port`` nor ``http+unix://path``."""


class UnknownService(RouterError, KeyError):
    """A service name the router does not hold."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep a readable message
        return str(self.args[0]) if self.args else "unknown service"


class UpstreamConnectError(RouterError):
    """Connecting to a replica failed before any byte of the request was sent."""


class ProxyError(RouterError):
    """A request that could not be proxied; ``status`` is the HTTP status to answer."""

    status = 502
    fields = b""  # extra header lines of the answer

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ProxyError):
    status = 400


class Unauthorized(ProxyError):
    status = 401
    fields = b'WWW-Authenticate: Bearer realm="stratus endpoint"\r\n'


class RequestTimeout(ProxyError):
    status = 408


class UriTooLong(ProxyError):
    status = 414


class HeadersTooLarge(ProxyError):
    status = 431


class UpgradeNotSupported(ProxyError):
    status = 501


class NoReadyReplica(ProxyError):
    status = 503


class HoldQueueFull(NoReadyReplica):
    pass


class HoldTimeout(NoReadyReplica):
    pass


class UpstreamFailed(ProxyError):
    status = 502


class UpstreamTimeout(ProxyError):
    status = 504
