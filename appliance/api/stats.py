"""``/api/v1/stats``: the figures of `appliance stats --json` (stats.summary). An admin key gets the
appliance's, and the analytics of any account; an account's key gets its own account's alone."""

from __future__ import annotations

import datetime as dt

from spectree import Response

from .. import clock, stats
from ..models import READ
from . import bp, needs, own_account_id, problems
from .common import query, ts
from .manage_accounts import REFUSALS
from .schemas import Stats, StatsQuery
from .spec import spec


@bp.get("/stats")
@needs(READ)
@spec.validate(query=StatsQuery, resp=Response(HTTP_200=Stats, **REFUSALS), tags=["stats"], skip_validation=True)
def api_stats():
    """Messages accepted, outcomes, the queue and the analytics

    The same figures as `appliance stats --json`. With an account's key, every figure is of that
    account's mail alone (and `account` is refused).
    """
    asked = query(StatsQuery)
    own = own_account_id()
    if own is not None and asked.account not in (None, own):
        raise problems.invalid([{"field": "account", "detail": "an account's key sees its own account's figures"}])
    since = dt.datetime.combine(asked.since, dt.time()) if asked.since else None
    account = own if own is not None else asked.account
    data = stats.summary(
        asked.period, clock.now(), account_id=account, stream=asked.stream, since=since, own=own is not None
    )
    data["since"], data["analytics"]["since"] = ts(data["since"]), ts(data["analytics"]["since"])
    return data
