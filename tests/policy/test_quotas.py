"""Account quotas at the SMTP edge: real smtplib over STARTTLS, hours simulated with the test clock."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance import events, queue
from appliance.models import Alert, Delivery, Message, SmtpAccount
from appliance.policy import quotas
from appliance.policy import sending as sp
from tests.support.mail import session, transaction


@pytest.fixture
def clock_at_noon(test_clock):
    test_clock.value = dt.datetime(2025, 6, 2, 12, 0, 30)
    return test_clock


@pytest.fixture
def account_id(app, account) -> int:
    return SmtpAccount.get(SmtpAccount.username == account[0]).id


def test_a_defer_quota_answers_451_at_mail_from_until_the_next_hour(smtp_server, account, account_id, clock_at_noon):
    quotas.set_quotas(account_id, [sp.Quota("hour", 3, "defer")])
    with session(smtp_server, account) as client:
        assert transaction(client, ["a@example.test", "b@example.test"])[0] == 250
        assert transaction(client)[0] == 250  # 3 recipients this hour now
        code, text, _ = transaction(client)
        assert (code, text) == (451, "4.7.1 Sending quota exceeded, try later")
        clock_at_noon.advance(3600)
        assert transaction(client)[0] == 250
    assert Message.select().count() == 3


def test_a_reject_quota_answers_550_with_the_reason(smtp_server, account, account_id, clock_at_noon):
    quotas.set_quotas(account_id, [sp.Quota("day", 1, "reject")])
    with session(smtp_server, account) as client:
        assert transaction(client)[0] == 250
        code, text, _ = transaction(client)
        clock_at_noon.advance(11 * 3600)  # still the same day
        again = transaction(client)[0]
    assert code == 550 and text == "5.7.1 Sending quota exceeded: this account may send 1 recipients per day"
    assert again == 550


def test_a_hold_quota_accepts_stores_held_and_releases_when_the_window_opens(
    app, smtp_server, account, account_id, clock_at_noon
):
    quotas.set_quotas(account_id, [sp.Quota("minute", 1, "hold")])
    with session(smtp_server, account) as client:
        first = transaction(client)
        code, _, held_id = transaction(client, ["c@example.test", "d@example.test"])
    assert first[0] == 250 and code == 250
    rows = list(Delivery.select().where(Delivery.message == held_id))
    assert [r.status for r in rows] == ["held", "held"]
    assert rows[0].last_reply == "held: quota-minute until 2025-06-02 12:01 UTC"
    assert Message.get_by_id(held_id).status == "held"
    assert Delivery.get(Delivery.message == first[2]).status == "queued"

    rt = queue.init(app.config)  # no workers: sweeps only enqueue
    clock_at_noon.advance(20)  # 12:00:50, the minute has not turned
    queue.sweep(rt)
    assert {r.status for r in Delivery.select().where(Delivery.message == held_id)} == {"held"}
    clock_at_noon.advance(15)  # 12:01:05
    assert queue.sweep(rt) >= 2
    rows = list(Delivery.select().where(Delivery.message == held_id))
    assert [r.status for r in rows] == ["queued", "queued"] and rows[0].last_reply == ""
    assert Message.get_by_id(held_id).status == "queued"
    held, released = (
        [(e["recipient"], e["details"]) for e in events.timeline(held_id) if e["type"] == kind]
        for kind in ("held", "released")
    )
    assert held == [
        (r, {"reason": "held: quota-minute until 2025-06-02 12:01 UTC"}) for r in ("c@example.test", "d@example.test")
    ]
    assert released == [(r, {"by": "quota window"}) for r in ("c@example.test", "d@example.test")]


def test_an_admin_hold_is_never_released_by_the_quota_sweep(app, smtp_server, account, account_id, clock_at_noon):
    with session(smtp_server, account) as client:
        _, _, message_id = transaction(client)
    queue.hold(list(Delivery.select().where(Delivery.message == message_id)))
    clock_at_noon.advance(86400)
    queue.sweep(queue.init(app.config))
    assert Delivery.get(Delivery.message == message_id).status == "held"


def test_alerts_are_raised_at_eighty_and_at_one_hundred_per_cent_once_per_window(
    smtp_server, account, account_id, clock_at_noon
):
    quotas.set_quotas(account_id, [sp.Quota("hour", 5, "defer")])
    with session(smtp_server, account) as client:
        for _ in range(4):
            assert transaction(client)[0] == 250
        assert not Alert.select().exists()
        assert transaction(client)[0] == 250  # MAIL FROM saw 4 of 5: 80 %
        assert [a.kind for a in Alert.select()] == ["quota-80"]
        assert transaction(client)[0] == 451  # saw 5 of 5: 100 %
        assert transaction(client)[0] == 451
    kinds = sorted((a.kind, a.count) for a in Alert.select())
    assert kinds == [("quota-100", 1), ("quota-80", 1)]
    alert = Alert.get(Alert.kind == "quota-100")
    assert alert.severity == "critical" and "5 of 5 recipients this hour" in alert.text
    assert alert.subject.endswith("hour quota, window from 2025-06-02 12:00")


def test_usage_counts_recipients_in_each_window(app, smtp_server, account, account_id, clock_at_noon):
    quotas.set_quotas(account_id, [sp.Quota("hour", 10, "defer"), sp.Quota("month", 100, "hold")])
    with session(smtp_server, account) as client:
        transaction(client, ["a@example.test", "b@example.test", "c@example.test"])
        clock_at_noon.advance(3600)
        transaction(client)
    rows = {r["period"]: r for r in quotas.usage_rows(account_id, clock_at_noon.value)}
    assert (rows["hour"]["used"], rows["hour"]["percent"]) == (1, 10)
    assert (rows["month"]["used"], rows["month"]["action"]) == (4, "hold")


def test_the_cli_sets_shows_and_clears_quotas(run_cli, account, account_id):
    from tests.support.process import cli_json

    result = run_cli("quotas", "set", account[0], "--per", "hour=100:defer", "--per", "day=1000:hold")
    assert result.exit_code == 0, result.output
    shown = cli_json(run_cli("quotas", "show", account[0], "--json"))
    assert [(q["period"], q["limit"], q["action"], q["used"]) for q in shown["quotas"]] == [
        ("hour", 100, "defer", 0),
        ("day", 1000, "hold", 0),
    ]
    bad = run_cli("quotas", "set", account[0], "--per", "week=5")
    assert bad.exit_code != 0 and "period is one of" in bad.output
    assert run_cli("quotas", "set", account[0], "--clear").exit_code == 0
    assert quotas.quotas_of(account_id) == []


BROADCAST = b"X-Stream: broadcast\r\n"


def test_a_quota_of_the_broadcast_stream_refuses_newsletters_after_data_and_never_an_order(
    smtp_server, account, account_id, clock_at_noon
):
    quotas.set_quotas(account_id, [sp.Quota("day", 2, "reject", "broadcast")])
    with session(smtp_server, account) as client:
        assert transaction(client, ["a@example.test", "b@example.test"], BROADCAST)[0] == 250
        code, text, _ = transaction(client, headers=BROADCAST)  # MAIL FROM passes: X-Stream comes with DATA
        assert (code, text) == (
            550,
            "5.7.1 Sending quota exceeded: this account may send 2 recipients per day of broadcast mail",
        )
        orders = [transaction(client)[0] for _ in range(3)]  # the account's default stream: transactional
    assert orders == [250, 250, 250]
    assert Message.select().where(Message.stream == "broadcast").count() == 1
    rows = {(r["stream"], r["period"]): r["used"] for r in quotas.usage_rows(account_id, clock_at_noon.value)}
    assert rows == {("broadcast", "day"): 2}


def test_a_quota_of_all_mail_and_one_of_a_stream_apply_together_and_the_later_hold_wins(
    smtp_server, account, account_id, clock_at_noon
):
    quotas.set_quotas(account_id, [sp.Quota("minute", 1, "hold"), sp.Quota("hour", 1, "hold", "broadcast")])
    with session(smtp_server, account) as client:
        assert transaction(client, headers=BROADCAST)[0] == 250  # nothing used yet
        code, _, held_id = transaction(client, headers=BROADCAST)  # both reached: held until 13:00
        clock_at_noon.advance(60)  # 12:01:30: the minute has turned, the broadcast hour has not
        order = transaction(client)
    assert code == 250 and order[0] == 250
    assert (
        Delivery.get(Delivery.message == held_id).last_reply == "held: quota-broadcast-hour until 2025-06-02 13:00 UTC"
    )
    assert Delivery.get(Delivery.message == order[2]).status == "queued"


def test_the_cli_sets_quotas_of_one_stream(run_cli, account, account_id):
    result = run_cli("quotas", "set", account[0], "--per", "day=1000:defer", "--per", "broadcast/day=200:hold")
    assert result.exit_code == 0, result.output
    assert quotas.quotas_of(account_id) == [sp.Quota("day", 1000, "defer"), sp.Quota("day", 200, "hold", "broadcast")]
    from tests.support.process import cli_json

    shown = cli_json(run_cli("quotas", "show", account[0], "--json"))
    assert [(q["stream"], q["period"], q["limit"]) for q in shown["quotas"]] == [
        ("", "day", 1000),
        ("broadcast", "day", 200),
    ]
    twice = run_cli("quotas", "set", account[0], "--per", "broadcast/day=1", "--per", "broadcast/day=2")
    assert twice.exit_code != 0 and "at most once" in twice.output
