"""The audit log: the dashboard's and the CLI's changes, with who and from where, in pages."""

from __future__ import annotations

import re

from appliance import audit
from appliance.models import AuditEntry

from .conftest import ADMIN


def test_changes_in_the_dashboard_are_recorded_with_who_and_from_where(client, sending_domain):
    client.form("/accounts/new", {"name": "Web shop", "priority": "3"})
    client.form("/suppressions/", {"address": "bob@example.com", "reason": "asked to stop"})
    client.form("/senders/", {"address": "orders@shop.test", "verified": "on"})
    client.form("/policy/warmup", {"steps": "1:100,2:", "enabled": "on"})
    rows = list(AuditEntry.select().order_by(AuditEntry.id))
    assert [r.action for r in rows] == ["account.create", "suppression.add", "sender.add", "policy.warmup"]
    assert {(r.actor, r.ip) for r in rows} == {(ADMIN[0], "127.0.0.1")}
    assert rows[1].subject == "address bob@example.com" and rows[1].detail == "asked to stop"
    page = client.get("/audit/").get_data(as_text=True)
    assert page.index("policy.warmup") < page.index("account.create")  # newest first
    assert "address bob@example.com" in page


def test_the_audit_log_pages_with_an_older_entries_link(client):
    for n in range(120):
        audit.record("account.edit", f"account {n}")
    first = client.get("/audit/").get_data(as_text=True)
    assert "account 119<" in first and "account 70<" in first and "account 69<" not in first
    older = re.search(r'href="(/audit/\?before=\d+)" rel="next"', first).group(1)
    second = client.get(older).get_data(as_text=True)
    assert "account 69<" in second and "account 20<" in second and "account 19<" not in second
    third = client.get(re.search(r'href="(/audit/\?before=\d+)" rel="next"', second).group(1)).get_data(as_text=True)
    assert "account 0<" in third and 'rel="next"' not in third


def test_a_viewer_reads_the_audit_log(viewer_client):
    audit.record("domain.add", "domain shop.test")
    assert b"domain shop.test" in viewer_client.get("/audit/").data


def test_cli_changes_are_recorded_as_done_by_cli(run_cli, client):
    run_cli("accounts", "create", "Newsletter")
    run_cli("suppressions", "add", "carol@example.com")
    run_cli("admin", "create", "ops@relay.test", "--role", "viewer", "--password", "ops password 1")
    rows = list(AuditEntry.select().order_by(AuditEntry.id))
    assert [(r.actor, r.action) for r in rows] == [
        ("cli", "account.create"),
        ("cli", "suppression.add"),
        ("cli", "user.create"),
    ]
    assert audit.record("message.retry", "message x").actor == "system"  # the command's actor ended with it
