"""The dashboard and the CLI call the same services, so they cannot disagree: the same bad input gets
the same sentence through both, the same change gives the same rows and audit entries, and the same
search gives the same messages."""

from __future__ import annotations

import re

import pytest
from markupsafe import escape

from appliance import accounts, clock
from appliance.models import AuditEntry, Delivery, SmtpAccount
from appliance.web.messages import PAGE_SIZE
from tests.support.process import cli_json

FORM = {"name": "Shop", "priority": "3", "note": "", "active": "on", "ip_rules": ""}


def _page_says(response, sentence: str) -> bool:
    return str(escape(f"{sentence[:1].upper()}{sentence[1:]}.")) in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("cli_args", "form", "sentence"),
    [
        (["--name", ""], {"name": ""}, "the account needs a name, for example the website that uses it"),
        (["--priority", "9"], {"priority": "9"}, "priority is 1 (very high) to 5 (very low)"),
        (["--ip", "10.0.0.0/33"], {"ip_rules": "10.0.0.0/33"}, "not an IP address or network: '10.0.0.0/33'"),
        (["--ip-only"], {"ip_only": "on"}, "an IP-only account needs at least one authorized address or network"),
    ],
)
def test_a_bad_account_edit_gets_the_same_sentence_from_the_cli_and_the_dashboard(
    client, run_cli, cli_args, form, sentence
):
    account, _ = accounts.create("Shop")
    before = SmtpAccount.get_by_id(account.id).__data__

    result = run_cli("accounts", "edit", account.username, *cli_args)
    assert result.exit_code != 0 and sentence in result.stderr

    response = client.form(f"/accounts/{account.id}", FORM | form)
    assert response.status_code == 400 and _page_says(response, sentence)

    assert SmtpAccount.get_by_id(account.id).__data__ == before


def test_a_bad_new_account_gets_the_same_sentence_from_the_cli_and_the_dashboard(client, run_cli):
    sentence = "an IP-only account needs at least one authorized address or network"
    result = run_cli("accounts", "create", "Printer", "--ip-only")
    assert result.exit_code != 0 and sentence in result.stderr
    response = client.form("/accounts/new", FORM | {"name": "Printer", "ip_only": "on"})
    assert response.status_code == 400 and _page_says(response, sentence)
    assert SmtpAccount.select().count() == 0


def test_an_edit_through_either_edge_stores_the_same_and_is_audited_the_same(client, run_cli):
    by_cli, _ = accounts.create("Shop")
    by_web, _ = accounts.create("Shop")
    assert (
        run_cli(
            "accounts",
            "edit",
            by_cli.username,
            "--priority",
            "5",
            "--note",
            "old site",
            "--ip",
            "192.0.2.7",
            "--ip",
            "2001:db8::1/64",
            "--ip-only",
        ).exit_code
        == 0
    )
    assert (
        client.form(
            f"/accounts/{by_web.id}",
            FORM | {"priority": "5", "note": "old site", "ip_rules": "192.0.2.7\n2001:db8::1/64", "ip_only": "on"},
        ).status_code
        == 302
    )
    fields = ("name", "priority", "note", "ip_rules", "ip_only", "active", "credential_version")
    cli_row, web_row = SmtpAccount.get_by_id(by_cli.id), SmtpAccount.get_by_id(by_web.id)
    assert [getattr(cli_row, f) for f in fields] == [getattr(web_row, f) for f in fields]
    edits = AuditEntry.select().where(AuditEntry.action == "account.edit").order_by(AuditEntry.id)
    assert [(e.actor, e.detail) for e in edits] == [
        ("cli", "ip_only, ip_rules, note, priority"),
        ("admin@relay.test", "ip_only, ip_rules, note, priority"),
    ]


def test_disabling_through_either_edge_ends_the_signed_in_sessions(client, run_cli):
    by_cli, _ = accounts.create("Shop")
    by_web, _ = accounts.create("Blog")
    assert run_cli("accounts", "disable", by_cli.username).exit_code == 0
    assert client.form(f"/accounts/{by_web.id}", FORM | {"name": "Blog", "active": ""}).status_code == 302
    for account in (by_cli, by_web):
        row = SmtpAccount.get_by_id(account.id)
        assert not row.active and row.credential_version == account.credential_version + 1
        assert accounts.session_refusal(account.id, account.credential_version) == accounts.SESSION_DISABLED


def test_a_delete_through_either_edge_is_audited_the_same(client, run_cli):
    by_cli, _ = accounts.create("Shop")
    by_web, _ = accounts.create("Blog")
    assert run_cli("accounts", "delete", by_cli.username, "--yes").exit_code == 0
    assert client.form(f"/accounts/{by_web.id}/delete", {"confirm": "yes"}).status_code == 302
    assert SmtpAccount.select().count() == 0
    deletes = AuditEntry.select().where(AuditEntry.action == "account.delete").order_by(AuditEntry.id)
    assert [(e.actor, e.subject, e.detail) for e in deletes] == [
        ("cli", f"account {by_cli.username}", "name 'Shop'"),
        ("admin@relay.test", f"account {by_web.username}", "name 'Blog'"),
    ]


def test_the_cli_stats_are_the_overview_page_figures(client, run_cli, store_message):
    delivered = store_message(subject="ok")
    store_message(subject="bad", rcpts=("gone@example.com", "left@example.com"))
    store_message(subject="waiting")
    Delivery.update(status="delivered", updated_at=clock.now()).where(Delivery.message == delivered).execute()
    Delivery.update(status="bounced", updated_at=clock.now()).where(Delivery.rcpt == "gone@example.com").execute()
    Delivery.update(status="held").where(Delivery.rcpt == "left@example.com").execute()
    figures = cli_json(run_cli("stats", "--period", "7d", "--json"))
    page = client.get("/?period=7d").get_data(as_text=True)
    cards = {label: int(n) for n, label in re.findall(r'<div class="value">(\d+)</div><div class="label">(\w+)', page)}
    assert figures["counts"] == {name: cards[name] for name in figures["counts"]}
    assert figures["counts"]["accepted"] == 3 and figures["counts"]["bounced"] == 1
    assert figures["queue"] == {"queued": 1, "held": 1}
    assert re.search(r'<div class="value">2</div><div class="label">in the queue now \(1 held\)', page)


def _send_over_smtp(smtp_server, account, rcpts: list[str], subject: str, *, stream: str = "") -> None:
    headers = f"From: shop@shop.test\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
    if stream:
        headers += f"X-Stream: {stream}\r\n"
    with smtp_server.submission() as client:
        client.login(*account)
        client.sendmail("shop@shop.test", rcpts, (headers + "\r\nHello\r\n").encode())


def test_the_same_search_lists_the_same_messages_on_the_dashboard_and_the_cli(client, run_cli, smtp_server, account):
    blog, password = accounts.create("Blog")
    _send_over_smtp(smtp_server, account, ["alice@example.test", "bob@other.test"], "Order 1")
    _send_over_smtp(smtp_server, account, ["carol@example.test"], "Weekly news", stream="broadcast")
    _send_over_smtp(smtp_server, (blog.username, password), ["dave@other.test"], "Order 2")
    shop_id = SmtpAccount.get(SmtpAccount.username == account[0]).id
    today = clock.now().strftime("%Y-%m-%d")
    searches = [
        {},
        {"stream": "broadcast"},
        {"rcpt": "example.test"},
        {"rcpt": "bob@other.test"},
        {"subject": "Order"},
        {"account": str(shop_id)},
        {"status": "queued", "sender": "shop.test"},
        {"since": today, "until": today},
        {"until": "2020-01-01"},
    ]
    for search in searches:
        page = client.get("/messages/", query_string=search).get_data(as_text=True)
        shown = list(dict.fromkeys(re.findall(r'href="/messages/([0-9A-Z]{26})"', page)))
        listed = cli_json(
            run_cli(
                "messages",
                "list",
                "--limit",
                str(PAGE_SIZE),
                "--json",
                *(f"--{field}={value}" for field, value in search.items()),
            )
        )
        assert [m["id"] for m in listed] == shown, search
    assert len(shown) == 0 and len(cli_json(run_cli("messages", "list", "--json"))) == 3
    assert [m["subject"] for m in cli_json(run_cli("messages", "list", "--json", "--rcpt", "other.test"))] == [
        "Order 2",
        "Order 1",
    ]


def test_a_bad_search_field_gets_the_same_sentence_from_the_cli_and_the_dashboard(client, run_cli):
    sentence = "Use a date like 2025-01-31."
    result = run_cli("messages", "list", "--since", "31/01/2025")
    assert result.exit_code != 0 and f"--since: {sentence}" in result.stderr
    assert sentence in client.get("/messages/", query_string={"since": "31/01/2025"}).get_data(as_text=True)
