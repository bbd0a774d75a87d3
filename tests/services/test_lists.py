"""Lists and their members (docs/campaigns-and-lists.md): over real SMTP sockets to a sink MX, each list
rule (mailing_list_id, the account's Transactional Campaign Recipients, a header naming no list, an
account tied to a list); members' statuses following suppressions, bounces, complaints and unsubscribes;
the `appliance lists` commands with CSV import and export."""

from __future__ import annotations

import pytest

from appliance import accounts, campaigns, lists, suppressions
from appliance.models import Alert, ListMember, MailingList, Message, SmtpAccount
from tests.support.dkim import signed_route
from tests.support.filing import mail, send
from tests.support.process import cli_json
from tests.support.relay import relay_overrides
from tests.support.wait import wait_for


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port)


def members_of(app, list_id: str) -> dict[str, str]:
    with app.app_context():
        return {m.email: m.status for m in ListMember.select().where(ListMember.list == list_id)}


def shop_account(app, account) -> SmtpAccount:
    with app.app_context():
        return SmtpAccount.get(SmtpAccount.username == account[0])


def test_mailing_list_id_adds_the_recipients_to_that_list_and_files_the_message_under_it(
    app, relay, account, shop_domain, dns_server, sink_mx
):
    sink = signed_route(app, shop_domain, dns_server, sink_mx)
    with app.app_context():
        news = lists.create("Newsletter")
    message_id = send(
        relay,
        account,
        mail("Hello", f"mailing_list_id: {news.id.upper()}"),
        rcpts=("Alice@Example.test", "bob@example.test"),
    )
    wait_for(lambda: len(sink.messages) == 1)
    assert members_of(app, news.id) == {"alice@example.test": "subscribed", "bob@example.test": "subscribed"}
    with app.app_context():
        assert Message.get_by_id(message_id).mailing_list == news.id
        # The account's default list is made (its Transactional Campaign Recipients) only when used.
        assert not MailingList.select().where(MailingList.default_for.is_null(False)).exists()


def test_without_a_header_recipients_join_the_accounts_transactional_campaign_recipients(
    app, relay, account, shop_domain, dns_server, sink_mx
):
    sink = signed_route(app, shop_domain, dns_server, sink_mx)
    first = send(relay, account, mail("Order 1"))
    second = send(relay, account, mail("Order 2"), rcpts=("carol@example.test",))
    wait_for(lambda: len(sink.messages) == 2)
    with app.app_context():
        (default,) = MailingList.select()
        assert default.name == "Transactional Campaign Recipients"
        assert default.default_for_id == shop_account(app, account).id
        assert Message.get_by_id(first).mailing_list == Message.get_by_id(second).mailing_list == default.id
    assert members_of(app, default.id) == {"alice@example.test": "subscribed", "carol@example.test": "subscribed"}


def test_a_mailing_list_id_naming_no_list_creates_none_the_message_goes_on_and_an_alert_says_why(
    app, relay, account, shop_domain, dns_server, sink_mx
):
    sink = signed_route(app, shop_domain, dns_server, sink_mx)
    send(relay, account, mail("Hello", "mailing_list_id: 6d284908-f535-48aa-bf77-542b0d8da338"))
    (received,) = wait_for(lambda: sink.messages)
    assert b"mailing_list_id" not in received.data
    with app.app_context():
        assert [lst.name for lst in MailingList.select()] == ["Transactional Campaign Recipients"]
        (alert,) = Alert.select().where(Alert.kind == campaigns.LIST_UNKNOWN)
    assert "'6d284908-f535-48aa-bf77-542b0d8da338' names no list" in alert.text
    assert alert.subject == f"account {account[0]}"


def test_an_account_tied_to_a_list_has_its_messages_and_figures_under_that_list(
    app, relay, account, shop_domain, dns_server, sink_mx, run_cli
):
    sink = signed_route(app, shop_domain, dns_server, sink_mx)
    tied = cli_json(run_cli("lists", "create", "Shop SMTP+", "--account", account[0], "--json"))
    assert tied["accounts"] == [account[0]]
    message_id = send(relay, account, mail("Order 7"), rcpts=("alice@example.test", "unknown-dan@example.test"))
    wait_for(lambda: sink.messages)
    with app.app_context():
        assert Message.get_by_id(message_id).mailing_list == tied["id"]

    shown = wait_for(lambda: (row := cli_json(run_cli("lists", "show", tied["id"], "--json")))["bounced"] and row)
    assert (shown["sent"], shown["delivered"], shown["bounced"]) == (2, 1, 1)
    assert [d["sent"] for d in shown["days"]] == [2]
    # Its recipients are members of the account's Transactional Campaign Recipients; the one whose
    # mailbox does not exist bounced, which suppressed it: bounced there.
    with app.app_context():
        default = MailingList.get(MailingList.default_for == shop_account(app, account).id)
    assert wait_for(lambda: members_of(app, default.id).get("unknown-dan@example.test") == "bounced")
    assert members_of(app, default.id)["alice@example.test"] == "subscribed"


def test_members_statuses_follow_suppressions_complaints_and_unsubscribes(app):
    import datetime as dt

    with app.app_context():
        a, b = lists.create("A"), lists.create("B")
        report = lists.import_csv(a.id, b"email\nann@example.test\nbob@example.test\ncat@example.test\n")
        lists.import_csv(b.id, b"email\nann@example.test\n")
        assert report.added == 3
        now = dt.datetime(2026, 1, 1)

        suppressions.add("ann@example.test")
        assert members_of(app, a.id)["ann@example.test"] == members_of(app, b.id)["ann@example.test"] == "unsubscribed"
        suppressions.complaint("ann@example.test", "complaint (abuse report)", now)
        assert members_of(app, b.id)["ann@example.test"] == "complained"
        suppressions.remove("ann@example.test")
        assert members_of(app, a.id)["ann@example.test"] == "subscribed"

        suppressions.hard_bounce("bob@example.test", "550 5.1.1 no such user", now)
        suppressions.unsubscribe("cat@example.test", "shop.test", "unsubscribed (one-click)", now)
        assert members_of(app, a.id) == {
            "ann@example.test": "subscribed",
            "bob@example.test": "bounced",
            "cat@example.test": "unsubscribed",
        }
        # An address already suppressed joins with the status its suppression gives it.
        lists.import_csv(b.id, b"email\nbob@example.test\n")
        assert members_of(app, b.id)["bob@example.test"] == "bounced"
        (row,) = suppressions.search("cat@")
        suppressions.remove_by_id(row.id)
        assert members_of(app, a.id)["cat@example.test"] == "subscribed"


def test_a_csv_import_reports_bad_rows_by_line_number_keeps_the_good_ones_and_export_gives_them_back(
    app, run_cli, tmp_path
):
    made = cli_json(run_cli("lists", "create", "Customers", "--json"))
    assert len(made["id"]) == 36 and made["members"] == 0
    with app.app_context():
        suppressions.add("zed@example.test")
    csv_file = tmp_path / "members.csv"
    csv_file.write_bytes(
        "\ufeffName,Email\r\n"  # a BOM and another case, as spreadsheets write them
        "Ann,ann@example.test\r\n"
        "Bob,not-an-address\r\n"
        "\r\n"
        '"Cat, the\r\nsecond",Cat <CAT@example.test>\r\n'  # a quoted field over two lines
        "Dan\r\n"
        "Ann again,ann@example.test\r\n"
        "Zed,zed@example.test\r\n"
        "Eve,eve@exa mple.test\r\n".encode()
    )
    report = cli_json(run_cli("lists", "import", made["id"], str(csv_file), "--json"))
    assert (report["rows"], report["added"], report["existing"], report["bad_count"]) == (7, 3, 0, 4)
    assert [(b["line"], b["reason"]) for b in report["bad"]] == [
        (3, "'not-an-address' is not an email address: no domain (expected local-part@domain)"),
        (7, "no address in the email column"),
        (8, "ann@example.test is on an earlier line too"),
        (10, "'eve@exa mple.test' is not an email address: invalid domain 'exa mple.test'"),
    ]
    text = run_cli("lists", "import", made["id"], str(csv_file))
    assert "0 added, 3 already on the list, 4 bad rows" in text.output
    assert "line 3: 'not-an-address' is not an email address" in text.output

    members = cli_json(run_cli("lists", "members", made["id"], "--json"))
    assert [(m["email"], m["status"], m["source"]) for m in members] == [
        ("ann@example.test", "subscribed", "import"),
        ("cat@example.test", "subscribed", "import"),
        ("zed@example.test", "unsubscribed", "import"),
    ]
    left = cli_json(run_cli("lists", "members", made["id"], "--status", "unsubscribed", "--json"))
    assert [m["email"] for m in left] == ["zed@example.test"]
    assert [m["email"] for m in cli_json(run_cli("lists", "members", made["id"], "--search", "CAT", "--json"))] == [
        "cat@example.test"
    ]

    exported = tmp_path / "out.csv"
    assert run_cli("lists", "export", made["id"], str(exported)).exit_code == 0
    lines = exported.read_text().splitlines()
    assert lines[0] == "email,status,source,created_at,updated_at"
    assert [line.split(",")[:2] for line in lines[1:]] == [
        ["ann@example.test", "subscribed"],
        ["cat@example.test", "subscribed"],
        ["zed@example.test", "unsubscribed"],
    ]
    again = cli_json(run_cli("lists", "create", "Copy", "--json"))
    assert cli_json(run_cli("lists", "import", again["id"], str(exported), "--json"))["added"] == 3
    listed = {r["name"]: r for r in cli_json(run_cli("lists", "list", "--json"))}
    assert listed["Customers"]["statuses"] == {"subscribed": 2, "unsubscribed": 1, "bounced": 0, "complained": 0}


def test_the_lists_commands_refuse_bad_input_with_a_sentence(app, run_cli, tmp_path):
    made = cli_json(run_cli("lists", "create", "Customers", "--json"))
    no_column = tmp_path / "no-column.csv"
    no_column.write_text("name,address\nAnn,ann@example.test\n")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("email\nrené@example.test\n".encode("latin-1"))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    for args, said in (
        (("lists", "import", made["id"], str(no_column)), "line 1 must name the columns, one of them `email`"),
        (("lists", "import", made["id"], str(latin1)), "the file is not UTF-8 text (line 2, byte 10)"),
        (("lists", "import", made["id"], str(empty)), "the file is empty"),
        (("lists", "import", made["id"], str(tmp_path / "missing.csv")), "cannot read"),
        (("lists", "import", "nope", str(no_column)), "there is no list 'nope'"),
        (("lists", "show", "nope"), "there is no list 'nope'"),
        (("lists", "create", "Shop", "--account", "nobody"), "no SMTP account 'nobody'"),
        (("lists", "create", " "), "the name may not be empty"),
        (("lists", "untie", made["id"], "nobody"), "no SMTP account 'nobody'"),
    ):
        result = run_cli(*args)
        assert result.exit_code != 0 and said in result.output, (args, result.output)
        assert "Traceback" not in result.output
    with app.app_context():
        acc, _ = accounts.create("Shop")
    assert run_cli("lists", "tie", made["id"], acc.username).exit_code == 0
    assert cli_json(run_cli("lists", "show", made["id"], "--json"))["accounts"] == [acc.username]
    assert run_cli("lists", "untie", made["id"], str(acc.id)).exit_code == 0
    again = run_cli("lists", "untie", made["id"], str(acc.id))
    assert again.exit_code != 0 and "is not tied to list" in again.output
