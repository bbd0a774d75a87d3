"""Delivery statuses and the model every table derives from."""

from __future__ import annotations

from peewee import (
    Model,
)

from ..db import database

# Delivery statuses. A Message's status is derived from its deliveries.
QUEUED, SENDING, DEFERRED, DELIVERED = "queued", "sending", "deferred", "delivered"
BOUNCED, FAILED, SUPPRESSED, HELD, CANCELLED = "bounced", "failed", "suppressed", "held", "cancelled"
RECEIVED = "received"  # inbound mail for a local domain: stored, not relayed
DELIVERY_STATUSES = (QUEUED, SENDING, DEFERRED, DELIVERED, BOUNCED, FAILED, SUPPRESSED, HELD, CANCELLED)
PENDING_STATUSES = (QUEUED, SENDING, DEFERRED, HELD)
PARTIAL = "partial"  # Message status: finished, some recipients delivered and some not
EXPANDING = "expanding"  # Message status: a list send whose members workers are still adding (appliance/fanout.py)


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False
