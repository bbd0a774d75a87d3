"""Server-side dashboard sessions: the cookie carries only a random id; the data lives in WebSession rows.

A session ends when its row goes: at sign-out, when its user changes the password (every other
session of that user), when an admin signs a user out everywhere or disables them, and on expiry.
A copied cookie then names nothing and is worth nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from flask import Flask, Request, Response, request
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SessionInterface, SessionMixin
from peewee import fn
from werkzeug.datastructures import CallbackDict

from .. import clock
from ..models import WebSession

IDLE_TIMEOUT = dt.timedelta(hours=12)  # a signed-in session unused this long ends …
MAX_LIFETIME = dt.timedelta(days=7)  # … and every session ends this long after sign-in
ANONYMOUS_TIMEOUT = dt.timedelta(hours=1)  # the sign-in form's session (its CSRF token)
TOUCH_EVERY = dt.timedelta(minutes=1)  # how often a request moves an unchanged session's expiry
NO_SESSION_PREFIX = "/api/"  # the HTTP API's paths (appliance/api)


def _digest(token: str) -> str:
    # Rows are keyed by the hash: someone who reads the database gets no cookie to replay.
    return hashlib.sha256(token.encode()).hexdigest()


class ServerSession(CallbackDict, SessionMixin):
    """The session's data, the row it was read from (None: new) and whether to give it a new id."""

    def __init__(self, initial=None, row: WebSession | None = None):
        def on_update(self) -> None:
            self.modified = True

        super().__init__(initial, on_update)
        self.row = row
        self.modified = False
        self.rotate = False


class ServerSessionInterface(SessionInterface):
    serializer = TaggedJSONSerializer()

    def get_cookie_secure(self, app: Flask) -> bool:
        # Secure whenever the dashboard is reached over TLS (and always with SESSION_COOKIE_SECURE).
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure)

    def open_session(self, app: Flask, request: Request):
        if request.path.startswith(NO_SESSION_PREFIX):
            # The HTTP API authenticates by API key alone: its requests read no session and write
            # none (a dashboard cookie sent along is ignored, and its session is not extended).
            return self.make_null_session(app)
        token = request.cookies.get(self.get_cookie_name(app))
        if token:
            row = WebSession.get_or_none(WebSession.id == _digest(token))
            if row is not None and row.expires_at > clock.now():
                try:
                    data = self.serializer.loads(row.data) if row.data else {}
                except ValueError:
                    data = {}
                return ServerSession(data, row)
        return ServerSession()

    def save_session(self, app: Flask, session: ServerSession, response: Response) -> None:
        response.vary.add("Cookie")
        cookie = {
            "domain": self.get_cookie_domain(app),
            "path": self.get_cookie_path(app),
            "secure": self.get_cookie_secure(app),
            "samesite": self.get_cookie_samesite(app),
            "httponly": self.get_cookie_httponly(app),
        }
        name = self.get_cookie_name(app)
        had_row = session.row is not None
        if had_row and (session.rotate or (session.modified and not session)):
            WebSession.delete_by_id(session.row.id)
            session.row = None
        if not session:
            if had_row:
                response.delete_cookie(name, **cookie)
            return
        now = clock.now()
        admin_id = _admin_id(session)
        if session.row is None:
            token = secrets.token_urlsafe(32)
            WebSession.delete().where(WebSession.expires_at <= now).execute()  # forget expired ones
            session.row = WebSession.create(
                id=_digest(token),
                admin=admin_id,
                data=self.serializer.dumps(dict(session)),
                ip=request.remote_addr or "",
                created_at=now,
                last_seen_at=now,
                expires_at=_expiry(now, now, admin_id),
            )
            response.set_cookie(name, token, **cookie)
        elif session.modified:
            WebSession.update(
                admin=admin_id,
                data=self.serializer.dumps(dict(session)),
                last_seen_at=now,
                expires_at=_expiry(now, session.row.created_at, admin_id),
            ).where(WebSession.id == session.row.id).execute()
        elif now - session.row.last_seen_at >= TOUCH_EVERY:
            WebSession.update(last_seen_at=now, expires_at=_expiry(now, session.row.created_at, admin_id)).where(
                WebSession.id == session.row.id
            ).execute()


def _admin_id(session: ServerSession) -> int | None:
    user_id = session.get("_user_id")  # flask-login's key
    return int(user_id) if isinstance(user_id, str) and user_id.isdigit() else None


def _expiry(now: dt.datetime, created: dt.datetime, admin_id: int | None) -> dt.datetime:
    if admin_id is None:
        return now + ANONYMOUS_TIMEOUT
    return min(now + IDLE_TIMEOUT, created + MAX_LIFETIME)


def rotate(session: ServerSession) -> None:
    """Give the session a new id when it is saved (at sign-in: no fixation of an id set before)."""
    session.rotate = True


def end(session: ServerSession) -> None:
    """End this session: its row goes and its cookie with it (sign-out)."""
    session.clear()
    session.rotate = True


def revoke_user(admin_id: int, keep: ServerSession | None = None) -> int:
    """End every session of a user (but ``keep``, the caller's own); return how many ended."""
    query = WebSession.delete().where(WebSession.admin == admin_id)
    if keep is not None and keep.row is not None:
        query = query.where(WebSession.id != keep.row.id)
    return query.execute()


def active_counts() -> dict[int, int]:
    """Signed-in sessions that have not expired, per user id."""
    rows = (
        WebSession.select(WebSession.admin, fn.COUNT(WebSession.id))
        .where(WebSession.admin.is_null(False), WebSession.expires_at > clock.now())
        .group_by(WebSession.admin)
        .tuples()
    )
    return dict(rows)
