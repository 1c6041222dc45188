"""pycron's web API and page (Tornado), a thin layer over :mod:`pycron.commands`.

Routes (JSON unless said otherwise; errors are ``{"ok": false, "error": {"code", "message"}}``):

* ``GET /processes``: the list of job documents; ``GET /processes/<name>``: one of them.
* ``GET /processes/<name>/logs?tail=N``: the last N log lines; with ``&follow=1`` a server-sent
  event stream of those lines then the live ones (``event: log``).
* ``POST /processes/<name>/(start|stop|restart)?wait=S``: the job document after the command;
  needs ``Authorization: Bearer <token>``.
* ``GET /health``: the health document, 200 when ok and 503 when not.
* ``GET /events``: server-sent events (``id: <seq>``, ``event: <kind>``, ``data: <event>``);
  ``Last-Event-ID`` (or ``?since=<seq>``) first replays the kept events newer than that.
* ``GET /``: the HTML page.

A GET never changes anything (a GET on a POST route, or a POST on a GET route, is 405). There are
no CORS headers, so a page of another origin cannot send the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web
from tornado.iostream import StreamClosedError

from pycron.api import SupervisorApi
from pycron.bus import Subscription
from pycron.commands import BAD_REQUEST, COMMANDS, Result, error, execute
from pycron.config import TOKEN_ENV, token_file
from pycron.page import PAGE, SCRIPT, STYLE

log = logging.getLogger("pycron.web")
access_log = logging.getLogger("pycron.web.access")

KEEPALIVE_S = 15.0
JOB = r"([^/]+)"
ACTIONS = "|".join(name for name, command in COMMANDS.items() if command.mutating)
"""The commands that change a job: POST only, with the token (start, stop, restart)."""


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"


PAGE_CSP = (
    "default-src 'none'; connect-src 'self'; "
    f"script-src {_csp_hash(SCRIPT)}; style-src {_csp_hash(STYLE)}; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """The access log: DEBUG through :mod:`logging` (never the console at INFO)."""
    request = handler.request
    access_log.debug(
        "%d %s %s (%s) %.1fms",
        handler.get_status(),
        request.method,
        request.uri,
        request.remote_ip,
        1000.0 * request.request_time(),
    )


class Handler(tornado.web.RequestHandler):
    """JSON responses and errors, the token check, and query parameters as text."""

    api: SupervisorApi
    token: str
    keepalive_s: float

    def initialize(self, api: SupervisorApi, token: str, keepalive_s: float) -> None:
        self.api = api
        self.token = token
        self.keepalive_s = keepalive_s

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def send_json(self, document: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(document, default=str))

    def send_error_doc(self, code: str, message: str, status: int) -> None:
        self.send_json({"ok": False, "error": {"code": code, "message": message}}, status)

    def send_result(self, result: Result, status: int = 200) -> None:
        if result.ok:
            self.send_json(result.result, status)
        else:
            self.send_error_doc(result.code or "internal", result.message or "failed", result.status)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Tornado's own errors (405, 404, 500) as the JSON error document."""
        if status_code == 405:
            allowed = [m for m in ("GET", "POST") if self._implements(m)]
            self.set_header("Allow", ", ".join(allowed))
            message = f"{self.request.method} {self.request.path} is not allowed (use {' or '.join(allowed)})"
            if "POST" in allowed:
                message += "; a GET never changes anything"
            code = "method_not_allowed"
        elif status_code == 404:
            code, message = "not_found", f"no such path {self.request.path}"
        elif status_code < 500:
            code, message = BAD_REQUEST, self._reason
        else:
            code, message = "internal", self._reason
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"ok": False, "error": {"code": code, "message": message}}))

    def _implements(self, method: str) -> bool:
        return getattr(type(self), method.lower()) is not getattr(tornado.web.RequestHandler, method.lower())

    def params(self, exclude: tuple[str, ...] = ()) -> dict[str, str] | None:
        """The query parameters (the last value of each); None after sending a 400."""
        params: dict[str, str] = {}
        for key, values in self.request.query_arguments.items():
            if key in exclude or not values:
                continue
            try:
                params[key] = values[-1].decode("utf-8")
            except UnicodeDecodeError:
                self.send_error_doc(BAD_REQUEST, f"{key}: not valid UTF-8", 400)
                return None
        return params

    def authorized(self) -> bool:
        """Check ``Authorization: Bearer <token>``; on failure send 401 and return False."""
        header = self.request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return True
        where = (
            f"the token is web.token in the pycron config, ${TOKEN_ENV}, "
            f"or the file {token_file(self.api.data_dir)} when neither is set"
        )
        problem = "a wrong token" if header else "no token"
        self.set_header("WWW-Authenticate", 'Bearer realm="pycron"')
        self.send_error_doc(
            "unauthorized",
            f"{self.request.method} {self.request.path} needs 'Authorization: Bearer <token>' "
            f"and got {problem}; {where}",
            401,
        )
        return False


class PageHandler(Handler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", PAGE_CSP)
        self.set_header("Referrer-Policy", "no-referrer")
        self.finish(PAGE)


class ProcessesHandler(Handler):
    async def get(self) -> None:
        if (params := self.params()) is not None:
            self.send_result(await execute(self.api, "list", params))


class ProcessHandler(Handler):
    async def get(self, name: str) -> None:
        if (params := self.params()) is not None:
            self.send_result(await execute(self.api, "status", {**params, "name": name}))


class ActionHandler(Handler):
    async def post(self, name: str, action: str) -> None:
        if not self.authorized() or (params := self.params()) is None:
            return
        result = await execute(self.api, action, {**params, "name": name})
        if result.ok:
            log.info("%s %s by %s: now %s", action, name, self.request.remote_ip, result.result.get("state"))
        self.send_result(result)


class HealthHandler(Handler):
    async def get(self) -> None:
        if (params := self.params()) is None:
            return
        result = await execute(self.api, "health", params)
        healthy = result.ok and bool(result.result.get("ok"))
        self.send_result(result, 200 if healthy else 503)


class StreamHandler(Handler):
    """A server-sent event stream of one :class:`Subscription`, with keepalive comments."""

    subscription: Subscription[dict[str, Any]] | None = None

    def start_stream(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("X-Accel-Buffering", "no")

    def write_event(self, kind: str, document: Mapping[str, Any], event_id: Any = None) -> None:
        head = f"id: {event_id}\n" if event_id is not None else ""
        self.write(f"{head}event: {kind}\ndata: {json.dumps(document, default=str)}\n\n")

    async def pump(self, subscription: Subscription[dict[str, Any]], kind: str | None, after: int) -> None:
        """Send the subscription's items (``kind`` None: each event's own kind) until it closes or
        the client goes away; items with ``seq <= after`` were replayed already."""
        self.subscription = subscription
        try:
            await self.flush()
            while True:
                item = await subscription.get(timeout=self.keepalive_s)
                if item is None:
                    if subscription.closed:
                        break
                    self.write(": keepalive\n\n")
                elif int(item.get("seq", after + 1)) > after:
                    self.write_event(kind or str(item.get("kind")), item, item.get("seq"))
                await self.flush()
        except StreamClosedError:
            pass
        finally:
            subscription.close()

    def on_connection_close(self) -> None:
        if self.subscription is not None:
            self.subscription.close()


class LogsHandler(StreamHandler):
    async def get(self, name: str) -> None:
        if (params := self.params(exclude=("follow",))) is None:
            return
        result = await execute(self.api, "logs", {**params, "name": name})
        follow = self.get_query_argument("follow", "0").lower() in ("1", "true", "yes")
        if not result.ok or not follow:
            self.send_result(result)
            return
        subscription = self.api.log_stream(name).subscribe()  # no await since the snapshot
        self.start_stream()
        for line in result.result:
            self.write_event("log", line, line.get("seq"))
        await self.pump(subscription, "log", after=-1)


class EventsHandler(StreamHandler):
    async def get(self) -> None:
        if (params := self.params(exclude=("since",))) is None:
            return
        if params:
            self.send_result(error(BAD_REQUEST, f"{min(params)}: unknown parameter (/events takes since)"))
            return
        since_text = self.request.headers.get("Last-Event-ID") or self.get_query_argument("since", "")
        since: int | None = None
        if since_text.strip():
            try:
                since = int(since_text.strip())
            except ValueError:
                message = f"since: expected an event seq (an integer), got {since_text!r}"
                self.send_result(error(BAD_REQUEST, message))
                return
        subscription = self.api.events.subscribe()
        replay = [e for e in self.api.events.recent() if since is not None and int(e["seq"]) > since]
        self.start_stream()
        after = since if since is not None else -1
        for event in replay:
            self.write_event(str(event.get("kind")), event, event["seq"])
            after = int(event["seq"])
        await self.pump(subscription, None, after)


class NotFoundHandler(Handler):
    def prepare(self) -> None:
        self.send_error_doc("not_found", f"no such path {self.request.path} (see GET / for the page)", 404)


def make_app(api: SupervisorApi, token: str, keepalive_s: float = KEEPALIVE_S) -> tornado.web.Application:
    """The web application over ``api``; POSTs need ``Authorization: Bearer <token>``."""
    if not token:
        raise ValueError("the pycron web API needs a non-empty token")
    args = {"api": api, "token": token, "keepalive_s": keepalive_s}
    return tornado.web.Application(
        [
            (r"/", PageHandler, args),
            (r"/processes/?", ProcessesHandler, args),
            (rf"/processes/{JOB}/logs", LogsHandler, args),
            (rf"/processes/{JOB}/({ACTIONS})", ActionHandler, args),
            (rf"/processes/{JOB}", ProcessHandler, args),
            (r"/health", HealthHandler, args),
            (r"/events", EventsHandler, args),
        ],
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        log_function=_log_request,
        compress_response=False,
    )


async def serve(
    api: SupervisorApi, host: str, port: int, token: str
) -> tuple[tornado.httpserver.HTTPServer, int]:
    """Listen on ``host:port`` (0: a free port) and return the server and the bound port."""
    app = make_app(api, token)
    sockets = tornado.netutil.bind_sockets(port, host)
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    bound = int(sockets[0].getsockname()[1])
    log.info("pycron web API on http://%s:%d", host, bound)
    return server, bound
