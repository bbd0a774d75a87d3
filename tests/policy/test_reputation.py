"""The reputation guard: bounce and complaint rates per account over a rolling window; warn, then hold."""

from __future__ import annotations

import pytest

from appliance import db, guard, intake, queue
from appliance.models import Alert, Delivery, Message, SmtpAccount, Suppression
from tests.support.mail import session, transaction
from tests.support.process import cli_json


@pytest.fixture
def overrides(overrides):
    return {**overrides, "REPUTATION_MIN_VOLUME": 20}


@pytest.fixture
def account_id(app, account) -> int:
    return SmtpAccount.get(SmtpAccount.username == account[0]).id


def finished(account_id: int, delivered: int, bounced: int) -> list[str]:
    """Store mail of the account whose deliveries ended delivered or bounced; return the recipients."""
    rcpts = []
    for status, count in (("delivered", delivered), ("bounced", bounced)):
        for _ in range(count):
            rcpt = f"r{len(rcpts)}@example.test"
            item = intake.prepare(
                b"From: shop@shop.test\r\n\r\nhi\r\n",
                mail_from="shop@shop.test",
                rcpts=[rcpt],
                hostname="relay.test",
                client_ip="127.0.0.1",
                client_helo="c",
                tls="",
                username=None,
                account_id=account_id,
                account_priority=3,
            )
            with db.atomic_write():
                intake.store(item)
            Delivery.update(status=status).where(Delivery.message == item.id).execute()
            rcpts.append(rcpt)
    return rcpts


def test_under_the_minimum_volume_bounces_do_not_count(app, account_id):
    finished(account_id, 10, 9)
    assert guard.check_reputation(app.config)[account_id].state == "ok"


def test_the_guard_warns_at_five_per_cent_bounces_then_holds_new_mail_at_ten(
    app, smtp_server, account, account_id, test_clock, run_cli
):
    finished(account_id, 19, 1)
    verdict = guard.check_reputation(app.config)[account_id]
    assert (verdict.state, verdict.reason) == ("warn", "bounce-rate")
    (warned,) = Alert.select()
    assert warned.kind == "reputation-warn" and "bounces 5.0%" in warned.text
    with session(smtp_server, account) as client:
        _, _, fine = transaction(client)
    assert Delivery.get(Delivery.message == fine).status == "queued"  # a warning holds nothing

    finished(account_id, 0, 2)  # 3 of 22: 13.6 %
    assert guard.check_reputation(app.config)[account_id].state == "hold"
    held_alert = Alert.get(Alert.kind == "reputation-hold")
    assert held_alert.severity == "critical" and "held until an admin releases it" in held_alert.text
    assert guard.check_reputation(app.config)[account_id].state == "hold"
    assert Alert.select().count() == 2  # no new alert while nothing changes

    with session(smtp_server, account) as client:
        code, _, held = transaction(client)
    assert code == 250  # accepted, and kept
    row = Delivery.get(Delivery.message == held)
    assert (row.status, row.last_reply) == ("held", "held: reputation-bounce-rate, until an admin releases it")
    test_clock.advance(7 * 86400)
    queue.sweep(queue.init(app.config))
    assert Delivery.get_by_id(row.id).status == "held"  # never released by itself

    released = cli_json(run_cli("queue", "release", held, "--json"))
    assert [r["status"] for r in released] == ["queued"]
    assert Message.get_by_id(held).status == "queued"
    shown = cli_json(run_cli("policy", "show", "--json"))
    assert [(r["account"], r["state"]) for r in shown["reputation"]] == [(account[0], "hold")]


def test_complaints_from_feedback_loops_hold_an_account_at_half_a_per_cent(app, account_id):
    rcpts = finished(account_id, 20, 0)
    Suppression.create(address=rcpts[0], reason="complaint (feedback loop)", source="complaint")
    verdict = guard.check_reputation(app.config)[account_id]
    assert (verdict.state, verdict.reason) == ("hold", "complaint-rate")
    assert verdict.complaint_rate == pytest.approx(0.05)


def test_bounces_older_than_the_window_no_longer_count(app, account_id, test_clock):
    finished(account_id, 17, 3)
    assert guard.check_reputation(app.config)[account_id].state == "hold"
    test_clock.advance(168 * 3600 + 1)
    finished(account_id, 20, 0)
    assert guard.check_reputation(app.config, test_clock.value)[account_id].state == "ok"


def test_the_sweep_runs_the_guard_once_per_interval(app, account_id, test_clock):
    rt = queue.init(app.config)
    queue.sweep(rt)
    finished(account_id, 17, 3)
    queue.sweep(rt)
    assert not Alert.select().exists()  # within REPUTATION_CHECK_INTERVAL of the last check
    test_clock.advance(app.config["REPUTATION_CHECK_INTERVAL"])
    queue.sweep(rt)
    assert Alert.get().kind == "reputation-hold"
