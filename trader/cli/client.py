"""The CLI's connection to the trader service: one RPC client per command, one error mapping.

``trader_call("get_positions", strategy="manual")`` returns the result or raises
:class:`~trader.cli.output.CliFailure`: a trader that does not answer is "the trader service is not
answering at <endpoint> (start it with ./start.sh)" with exit status 2; an error the trader
replies (``refused``, ``bad_order``, ``unknown_contract`` ...) is its message with exit status 1.

With ``zmq.curve.enabled`` in the trader config, every connection to the trader (RPC and the PUB
sockets) uses CurveZMQ with keypair ``zmq.curve.client_key`` (:func:`trader_curve`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from trader.cli.context import CliContext, cli_context
from trader.cli.output import CliFailure, failure, unavailable
from trader.config.schema import ConfigError
from trader.messaging.curve import CurveKeyError, CurveKeys
from trader.messaging.rpc import RpcClient, RpcClientError, RpcRemoteError, RpcTimeout, RpcUnavailable

CONNECT_TIMEOUT_S = 2.0
"""How long the first ping may take before the trader counts as down."""
CALL_TIMEOUT_S = 15.0
EXIT_CONFIG = 2


def trader_endpoint(ctx: CliContext | None = None) -> str:
    ctx = ctx or cli_context()
    try:
        return ctx.trader_config().zmq.rpc
    except ConfigError as exc:
        raise CliFailure(failure(str(exc), code="invalid_config", exit_code=EXIT_CONFIG)) from None


def trader_curve(ctx: CliContext | None = None) -> CurveKeys | None:
    """The CLI's CurveZMQ keys for the trader (None: curve disabled); a CliFailure (exit 2) names a
    missing key file."""
    ctx = ctx or cli_context()
    try:
        curve = ctx.trader_config().zmq.curve
        return curve.client_keys(ctx.resolved_data_dir())
    except ConfigError as exc:
        raise CliFailure(failure(str(exc), code="invalid_config", exit_code=EXIT_CONFIG)) from None
    except CurveKeyError as exc:
        message = f"zmq.curve: {exc}"
        raise CliFailure(failure(message, code="curve_keys", exit_code=EXIT_CONFIG)) from None


class TraderClient:
    """A connected trader RPC client whose errors are CLI failures."""

    def __init__(self, client: RpcClient, endpoint: str) -> None:
        self._client = client
        self.endpoint = endpoint

    def call(self, method: str, *, timeout: float = CALL_TIMEOUT_S, **params: Any) -> Any:
        try:
            return self._client.call(method, params, timeout=timeout)
        except RpcRemoteError as exc:
            raise CliFailure(failure(exc.message, code=exc.code)) from None
        except (RpcTimeout, RpcUnavailable):
            raise CliFailure(unavailable("trader service", self.endpoint)) from None
        except RpcClientError as exc:
            raise CliFailure(failure(f"{self.endpoint}: {exc}", code="rpc_error")) from None


@contextmanager
def trader_client(endpoint: str | None = None) -> Iterator[TraderClient]:
    """A :class:`TraderClient` whose trader answered a ping (else a CliFailure, exit 2)."""
    where = endpoint or trader_endpoint()
    curve = trader_curve()
    with RpcClient(where, timeout=CALL_TIMEOUT_S, max_retries=1, curve=curve) as rpc:
        client = TraderClient(rpc, where)
        client.call("ping", timeout=CONNECT_TIMEOUT_S)
        yield client


def trader_call(method: str, *, timeout: float = CALL_TIMEOUT_S, **params: Any) -> Any:
    """One call on a fresh connection (for commands that make a single call)."""
    with trader_client() as client:
        return client.call(method, timeout=timeout, **params)
