"""The HTTP API (docs/api.md): ``/api/v1/…`` on the dashboard's Flask app, authenticated by the API
keys of the SMTP accounts (``Authorization: Bearer KEY``) and never by the dashboard's session
cookie; refusals are problem documents (RFC 9457)."""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import math
import threading
import time

from flask import Blueprint, Flask, current_app, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from .. import accounts, api_keys, audit, db, queue, replies
from . import problems
from .spec import document

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__, url_prefix="/api/v1")
API_KEY = "api_key"  # the ``permission`` mark of a view that takes an API key (web/permissions.py)
PUBLIC = "public"
_OPEN = {"api.api_openapi", "api.api_docs"}  # the document and its page: no key


def _mark(view, permission: str):
    view.permission = permission
    return view


def needs(scope: str, *, admin: bool = False):
    """Let a key whose scope grants ``scope`` reach this view (the key was checked before it);
    ``admin``: only an admin key (what concerns the whole appliance, docs/api.md#who-may-do-what)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            if admin and not g.api_key.is_admin:
                raise problems.Problem(
                    403,
                    "admin-key-required",
                    "This needs an admin key",
                    "this concerns the whole appliance: it needs an admin key (appliance api-keys create --admin)",
                )
            if not g.api_key.allows(scope):
                raise problems.Problem(
                    403,
                    "insufficient-scope",
                    "The API key's scope does not allow this",
                    f"this needs a key with scope {scope} (or manage); this key's scope is {g.api_key.key.scope}",
                )
            return view(*args, **kwargs)

        return _mark(wrapper, API_KEY)

    return decorate


def own_account_id() -> int | None:
    """The account the request's key acts for, whose things alone it sees; None: an admin key, all."""
    account = g.api_key.account
    return None if account is None else account.id


class RateLimiter:
    """Requests per minute per API key, as a token bucket in this process (bursts up to the limit)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._buckets: dict[int, tuple[float, float]] = {}  # key id -> (tokens, at)

    def wait(self, key_id: int, per_minute: int, now: float | None = None) -> float:
        """Take one request of the key's budget: 0 when it may go ahead, else the seconds to wait."""
        if per_minute <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        rate = per_minute / 60.0
        with self._lock:
            tokens, at = self._buckets.get(key_id, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - at) * rate)
            if tokens >= 1:
                self._buckets[key_id] = (tokens - 1, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1 - tokens) / rate


class Enqueuer:
    """Hands the deliveries of API mail to the workers after its commit, off the writer thread (as
    serve.QueueService.on_committed does for SMTP mail); the sweeps catch up on anything missed."""

    def __init__(self, settings: dict):
        self.settings = settings
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="api-enqueue")

    def on_committed(self, stored: list) -> None:
        ids = [s.message_id for s in stored if not s.replayed]
        if ids:
            self._pool.submit(self._enqueue, ids)

    def _enqueue(self, message_ids: list[str]) -> None:
        try:
            db.database.connect(reuse_if_open=True)
            queue.enqueue_messages(queue.runtime(self.settings), message_ids)
        except Exception:  # the rows are committed: the periodic sweep enqueues them instead
            log.exception("could not enqueue %d message(s) sent over the API", len(message_ids))


def _unauthorized(reason: str, detail: str) -> problems.Problem:
    return problems.Problem(401, reason, "No valid API key", detail, headers={"WWW-Authenticate": 'Bearer realm="api"'})


def _authenticate() -> None:
    if request.endpoint in _OPEN:
        return
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise _unauthorized("missing-api-key", "send an API key as Authorization: Bearer KEY")
    checked = api_keys.check(presented)
    if checked is None:
        raise _unauthorized("invalid-api-key", "the API key is unknown or was revoked")
    account, ip = checked.account, request.remote_addr or ""
    if account is not None and not account.active:
        raise problems.from_reply(replies.ACCOUNT_DISABLED)
    if account is not None and not accounts.ip_allowed(account, ip):
        raise problems.from_reply(replies.IP_NOT_AUTHORIZED.format(ip=ip))
    wait = current_app.extensions["api_rate"].wait(checked.key.id, current_app.config["API_RATE_LIMIT"])
    if wait:
        raise problems.Problem(
            429,
            "rate-limited",
            "Too many requests",
            f"this API key may make {current_app.config['API_RATE_LIMIT']} requests per minute",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    g.api_key = checked
    g.audit_token = audit.act_as(f"api key {checked.key.prefix}", ip)
    db.write(functools.partial(api_keys.record_use, checked.key.id))  # not waited for


bp.before_request(_authenticate)


@bp.errorhandler(problems.Problem)
def _problem(exc: problems.Problem):
    return exc.response()


@bp.get("/openapi.json")
def api_openapi():
    """The OpenAPI 3.1 document of this API."""
    return jsonify(document())


@bp.get("/docs")
def api_docs():
    """The API reference, drawn by Swagger UI (vendored under static/) from the OpenAPI document."""
    return render_template("api/docs.html")


_mark(api_openapi, PUBLIC)
_mark(api_docs, PUBLIC)

from . import addresses, groups, hooks, manage_accounts, messages, reading, stats  # noqa: E402,F401 — their views join the blueprint


def _not_routed(exc: HTTPException):
    """A path under /api/ that is no endpoint, or a method it does not take: a problem document
    there (the dashboard keeps its own pages)."""
    if not request.path.startswith(bp.url_prefix + "/"):
        return exc
    reason = "not-found" if exc.code == 404 else "method-not-allowed"
    problem = problems.Problem(
        exc.code or 500, reason, exc.name, f"{request.method} {request.path}: {exc.name.lower()}"
    )
    response = problem.response()
    if exc.code == 405:
        response.headers["Allow"] = exc.get_response().headers.get("Allow", "")
    return response


def init_app(app: Flask) -> None:
    """Register the API on ``app`` (web.init_app calls it)."""
    app.extensions["api_rate"] = RateLimiter()
    app.extensions["api_enqueuer"] = Enqueuer(app.config)
    app.register_blueprint(bp)
    app.register_error_handler(404, _not_routed)
    app.register_error_handler(405, _not_routed)
