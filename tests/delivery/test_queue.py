"""The queue: claims, leases, sweeps, priority order, message status, admin actions, the CLI."""

from __future__ import annotations

import threading

import pytest
from ulid import ULID

from appliance import clock, db, queue
from appliance.delivery.record import retry_delay
from appliance.models import Delivery, Message, MessageBody, Suppression, message_status
from tests.support.mail import settled, submit
from tests.support.process import cli_json
from tests.support.relay import relay_overrides, smtp_ports


def add_messages(count: int, *, priority: int = 3, domain: str = "example.test") -> list[int]:
    """Store ``count`` queued one-recipient messages directly; return their delivery ids."""
    now = clock.now()
    ids = [str(ULID()) for _ in range(count)]
    with db.atomic_write():
        for start in range(0, count, 500):
            chunk = ids[start : start + 500]
            Message.insert_many(
                [
                    {"id": i, "mail_from": "a@shop.test", "priority": priority, "received_at": now, "rcpt_count": 1}
                    for i in chunk
                ]
            ).execute()
            MessageBody.insert_many([{"message": i, "data": b"Subject: x\r\n\r\nx\r\n"} for i in chunk]).execute()
            Delivery.insert_many(
                [
                    {
                        "message": i,
                        "rcpt": f"{i.lower()}@{domain}",
                        "domain": domain,
                        "priority": priority,
                        "next_attempt_at": now,
                        "updated_at": now,
                    }
                    for i in chunk
                ]
            ).execute()
    return [d.id for d in Delivery.select(Delivery.id).where(Delivery.message.in_(ids)).order_by(Delivery.id)]


def test_importing_the_queue_and_building_the_app_start_nothing(app, tmp_path):
    assert not (tmp_path / "data" / "queue.db").exists()
    assert not [t for t in threading.enumerate() if t.name.startswith(("Worker", "Scheduler", "queue-"))]


def test_two_workers_never_claim_the_same_row_and_a_stale_lease_can_be_taken_back(app, test_clock):
    ids = add_messages(20)
    results: list[list[int]] = [[], []]

    def worker(slot: int) -> None:
        db.database.connect(reuse_if_open=True)
        results[slot] = [d.id for d in queue.claim(ids, lease_seconds=300)]
        db.database.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results[0] + results[1]) == ids
    assert not set(results[0]) & set(results[1])
    assert queue.claim(ids, lease_seconds=300) == []

    test_clock.advance(301)
    assert [d.id for d in queue.claim(ids[:3], lease_seconds=300)] == ids[:3]


def test_a_priority_one_message_behind_ten_thousand_normal_ones_is_dequeued_first(app):
    add_messages(10_000, priority=3)
    (urgent,) = add_messages(1, priority=1, domain="other.test")
    rt = queue.init(app.config)
    assert queue.sweep(rt, startup=True) == 10_001
    first = rt.huey.dequeue()
    assert first.args == ("other.test", [urgent])


def test_the_next_rows_for_a_session_come_in_priority_then_age_order(app):
    normal = add_messages(3, priority=3)
    urgent = add_messages(2, priority=1)
    assert [d.id for d in queue.claim_next("example.test", 4, 300)] == urgent + normal[:2]


def test_sweeps_take_back_stale_rows_and_never_resend_delivered_ones(app, test_clock):
    rt = queue.init(app.config)
    waiting, sending, delivered = add_messages(3)
    queue.claim([sending], lease_seconds=300)
    Delivery.update(status="delivered").where(Delivery.id == delivered).execute()

    assert queue.sweep(rt) == 0  # fresh rows: their on_committed enqueue is trusted for a while
    test_clock.advance(app.config["SWEEP_INTERVAL"] + 1)
    assert queue.sweep(rt) == 1  # the waiting row; the sending one is still leased
    assert queue.sweep(rt) == 0  # its task is queued now (lease), so no second copy
    test_clock.advance(301)
    assert queue.sweep(rt) == 2  # both leases expired: the waiting row and the stale sending one
    assert Delivery.get_by_id(sending).status == "queued"
    assert Delivery.get_by_id(delivered).status == "delivered"
    assert queue.sweep(rt, startup=True) == 2


def test_the_start_up_sweep_takes_back_rows_a_killed_process_was_sending(app, test_clock):
    rt = queue.init(app.config)
    (row,) = add_messages(1)
    queue.claim([row], lease_seconds=300)
    assert queue.sweep(rt) == 0
    if db.is_sqlite():  # one process by design: at start-up nobody else can be sending it
        assert queue.sweep(rt, startup=True) == 1
    else:  # the scale-out mode: another worker may still be, so the row waits for its lease
        assert queue.sweep(rt, startup=True) == 0
        test_clock.advance(301)
        assert queue.sweep(rt, startup=True) == 1
    assert Delivery.get_by_id(row).status == "queued"


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["queued", "delivered"], "queued"),
        (["sending"], "queued"),
        (["deferred", "delivered"], "deferred"),
        (["held", "bounced"], "held"),
        (["delivered", "delivered"], "delivered"),
        (["delivered", "bounced"], "partial"),
        (["delivered", "suppressed"], "partial"),
        (["bounced", "failed"], "bounced"),
        (["failed", "cancelled"], "failed"),
        (["cancelled", "suppressed"], "cancelled"),
        (["suppressed"], "suppressed"),
    ],
)
def test_a_message_status_follows_its_deliveries(statuses, expected):
    assert message_status(statuses) == expected


def test_retries_follow_the_schedule_and_its_last_step_repeats():
    schedule = "60,300,900"
    assert [retry_delay(schedule, n) for n in range(1, 6)] == [60, 300, 900, 900, 900]


class TestWithWorkers:
    @pytest.fixture
    def overrides(self, overrides, dns_server, delivery_port):
        return relay_overrides(overrides, dns_server, delivery_port, WORKERS=1)

    def test_a_priority_one_message_accepted_last_is_delivered_first(self, app, account, dns_server, sink_mx):
        from appliance.serve import QueueService, start_smtp
        from tests.support.relay import HOSTNAME, Relay, SmtpServer

        for domain, ip in (("a.test", "127.0.0.3"), ("b.test", "127.0.0.4")):
            dns_server.mx(domain, (10, f"mx.{domain}"))
            dns_server.a(f"mx.{domain}", ip)
        sink_a, sink_b = sink_mx("127.0.0.3"), sink_mx("127.0.0.4")
        service, files = start_smtp(app.config)  # nobody delivers while the backlog builds up
        try:
            relay = Relay(SmtpServer(HOSTNAME, *smtp_ports(app.config["SMTP_LISTEN"]), files.ca, service), None)
            normal = [submit(relay, account, [f"n{i}@a.test"], subject=f"n{i}") for i in range(30)]
            urgent = submit(relay, account, ["boss@b.test"], extra=b"X-Priority: 1 (Highest)\r\n")
        finally:
            service.stop()
        assert Message.get_by_id(urgent).priority == 1
        workers = QueueService(app.config)
        workers.start()
        try:
            settled(urgent, "delivered")
            for message_id in normal:
                settled(message_id, "delivered")
        finally:
            workers.stop()
        first_normal = min(Delivery.get(Delivery.message == m).delivered_at for m in normal)
        assert Delivery.get(Delivery.message == urgent).delivered_at <= first_normal
        assert len(sink_a.messages) == 30 and len(sink_b.messages) == 1

    def test_the_cli_lists_holds_releases_retries_and_cancels_deliveries(
        self, relay, account, run_cli, dns_server, sink_mx, test_clock
    ):
        dns_server.mx("grey.test", (10, "mx.grey.test"))
        dns_server.a("mx.grey.test", "127.0.0.6")
        sink = sink_mx("127.0.0.6")
        first = submit(relay, account, ["greylist@grey.test"])
        second = submit(relay, account, ["greylist2@grey.test"])
        settled(first, "deferred")
        settled(second, "deferred")

        listed = cli_json(run_cli("queue", "list", "--json"))
        assert {r["message"] for r in listed} == {first, second}
        assert all(r["status"] == "deferred" and r["attempts"] == 1 for r in listed)

        held = cli_json(run_cli("queue", "hold", second, "--json"))
        assert [r["status"] for r in held] == ["held"]
        assert Message.get_by_id(second).status == "held"

        retried = cli_json(run_cli("queue", "retry", first, "--json"))
        assert retried[0]["status"] == "deferred"
        settled(first, "delivered")  # due now, without moving the clock
        assert len(sink.messages) == 1

        cancelled = cli_json(run_cli("queue", "cancel", str(held[0]["id"]), "--json"))
        assert [r["status"] for r in cancelled] == ["cancelled"]
        assert Message.get_by_id(second).status == "cancelled"
        result = run_cli("queue", "release", second)
        assert "0 deliveries" in result.output and "skipped" in result.output
        assert cli_json(run_cli("queue", "list", "--json")) == []

        shown = cli_json(run_cli("messages", "show", first, "--json"))
        assert [a["outcome"] for a in shown["attempts"]] == ["deferred", "delivered"]
        assert shown["attempts"][1]["mx_host"] == "mx.grey.test" and shown["attempts"][1]["mx_ip"] == "127.0.0.6"
        text = run_cli("messages", "show", first).output
        assert "timeline:" in text and "451 4.7.1 Greylisted" in text and "via mx.grey.test [127.0.0.6]" in text


def test_the_cli_adds_lists_and_removes_suppressions(run_cli):
    added = run_cli("suppressions", "add", "Bad@Example.test", "--reason", "asked")
    assert "suppressed bad@example.test" in added.output
    assert "already" in run_cli("suppressions", "add", "bad@example.test").output
    (row,) = cli_json(run_cli("suppressions", "list", "--json"))
    assert (row["address"], row["source"], row["reason"]) == ("bad@example.test", "manual", "asked")
    run_cli("suppressions", "remove", "bad@example.test")
    assert not Suppression.select().exists()
    result = run_cli("suppressions", "remove", "bad@example.test")
    assert result.exit_code != 0
