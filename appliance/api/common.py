"""What the API's views share: query strings and JSON bodies checked against their pydantic models
(a bad or unknown field is ``422 invalid-request`` naming it), pages of a listing (``page`` and
``limit``, at most MAX_LIMIT), timestamps, and the 404 that hides another account's things."""

from __future__ import annotations

from typing import TypeVar

from flask import json, request
from pydantic import BaseModel, ValidationError

from . import problems

MAX_LIMIT = 100  # rows per page, whatever is asked
Model = TypeVar("Model", bound=BaseModel)


def ts(value) -> str | None:
    """A stored UTC time as ISO 8601 with its Z."""
    return value.isoformat(timespec="seconds") + "Z" if value else None


def field_name(location: tuple) -> str:
    """A pydantic error location as the request names it: attachments[0].content, from, …"""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part).rstrip("_")
    return text or "body"


def _validated(model: type[Model], data: dict) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{"field": field_name(e["loc"]), "detail": e["msg"]} for e in exc.errors(include_url=False)]
        raise problems.invalid(errors) from None


def query(model: type[Model]) -> Model:
    """The request's query string as ``model`` (which forbids unknown parameters)."""
    return _validated(model, request.args.to_dict())


def json_body(model: type[Model], body: bytes | None = None) -> Model:
    """The request's JSON object (or ``body``) as ``model``; 400 when it is no JSON object."""
    raw = request.get_data(cache=False) if body is None else body
    if not raw.strip():
        raise problems.Problem(400, "empty-body", "The body is empty", "send a JSON object")
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise problems.Problem(400, "bad-json", "The body is not JSON", f"the body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise problems.Problem(400, "bad-json", "The body is not a JSON object", "send a JSON object")
    return _validated(model, payload)


def cut(found: list, page: int, limit: int) -> tuple[list, int | None]:
    """Page ``page`` of ``limit`` rows out of the up to ``limit + 1`` rows read from its start, and
    the number of the next page (None: this is the last)."""
    return found[:limit], (page + 1 if len(found) > limit else None)


def paginate(rows, page: int, limit: int) -> tuple[list, int | None]:
    """One page of a peewee query (in its order) and the number of the next page (None: the last)."""
    return cut(list(rows.limit(limit + 1).offset((page - 1) * limit)), page, limit)


def not_found(what: str, ref) -> problems.Problem:
    """A thing that does not exist, or that the key's account may not see: the same answer, so an
    account's key learns nothing of another's ids."""
    return problems.Problem(404, "not-found", f"No such {what}", f"there is no {what} {ref!r} this key may see")
