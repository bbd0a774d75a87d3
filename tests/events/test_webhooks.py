"""Webhooks end to end: real mail through the SMTP listeners to sink MX hosts, the events POSTed by the
workers to a real HTTP receiver on 127.0.0.1, every signature checked by this module's own HMAC."""

from __future__ import annotations

import base64
import json
import ssl

import pytest

from appliance import db, events, queue, webhooks
from appliance.models import Alert, AuditEntry, Message, WebhookCall, WebhookDelivery
from tests.support.process import cli_json
from tests.support.relay import relay_overrides
from tests.support.wait import wait_for
from tests.support.webhooks import Receiver, signature_ok


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port, WEBHOOK_ALLOW_PRIVATE=True)


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def sink(dns_server, sink_mx):
    dns_server.mx("example.test", (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")
    return sink_mx("127.0.0.3")


def create(run_cli, url: str, *options: str) -> dict:
    return cli_json(run_cli("webhooks", "create", url, *options, "--json"))


def submit(relay, account, *rcpts: str) -> str:
    with relay.smtp.submission() as client:
        client.login(*account)
        client.sendmail(
            "orders@shop.test", list(rcpts), b"From: orders@shop.test\r\nSubject: Order 7\r\n\r\nThanks.\r\n"
        )
    return Message.select().order_by(Message.received_at.desc(), Message.id.desc()).first().id


def test_delivered_and_bounced_mail_reach_the_receiver_signed_one_event_per_call(
    relay, account, sink, receiver, run_cli
):
    hook = create(run_cli, receiver.url)
    assert hook["secret"].startswith("whsec_") and len(base64.b64decode(hook["secret"][6:])) == 32
    assert hook["events"] == [] and hook["accounts"] == [] and hook["active"] is True

    delivered = submit(relay, account, "alice@example.test")
    bounced = submit(relay, account, "unknown.user@example.test")
    wanted = {"message.accepted", "message.delivered", "message.bounced"}
    wait_for(
        lambda: sorted(receiver.types()) == sorted(["message.accepted"] * 2 + ["message.delivered", "message.bounced"])
    )
    assert set(receiver.types()) == wanted and len(receiver.calls) == 4

    for call in receiver.calls:
        assert signature_ok(hook["secret"], call), call.headers
        assert call.path == "/hooks/mail?token=t1"
        assert call.headers["content-type"] == "application/json"
        assert call.headers["webhook-id"].startswith("msg_")
    assert len({c.headers["webhook-id"] for c in receiver.calls}) == 4
    by_type = {(c.payload["data"]["message_id"], c.payload["type"]): c.payload for c in receiver.calls}
    done = by_type[(delivered, "message.delivered")]
    assert done["data"]["recipient"] == "alice@example.test"
    assert done["data"]["account"] == account[0] and done["data"]["from"] == "orders@shop.test"
    assert done["data"]["details"]["mx"] == "mx.example.test" and done["data"]["details"]["reply"].startswith("250")
    assert done["timestamp"].endswith("Z")
    gone = by_type[(bounced, "message.bounced")]
    assert gone["data"]["recipient"] == "unknown.user@example.test" and "5.1.1" in gone["data"]["details"]["reply"]
    assert by_type[(bounced, "message.accepted")]["data"]["details"] == {"via": "smtp"}

    # Each call is recorded once the receiver has answered it.
    show = lambda: cli_json(run_cli("webhooks", "show", str(hook["id"]), "--json"))  # noqa: E731
    shown = wait_for(lambda: (s := show())["deliveries"]["delivered"] == 4 and s)
    assert shown and "secret" not in shown
    assert [c["status_code"] for c in shown["calls"]] == [200] * 4
    assert all(c["excerpt"] == "ok" and c["duration_ms"] >= 0 for c in shown["calls"])
    listed = cli_json(run_cli("webhooks", "list", "--json"))
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]


def test_an_endpoint_gets_only_the_types_and_accounts_it_asked_for(relay, account, sink, receiver, run_cli):
    bounces = create(run_cli, receiver.url, "--events", "bounced,complained")
    other = cli_json(run_cli("accounts", "create", "Other shop", "--json"))
    create(run_cli, receiver.url.replace("t1", "t2"), "--account", other["username"])
    submit(relay, account, "alice@example.test", "unknown.user@example.test")

    wait_for(lambda: receiver.types() == ["message.bounced"])
    wait_for(lambda: Message.get_by_id(Message.select().first().id).status == "partial")
    assert receiver.types() == ["message.bounced"]
    assert receiver.calls[0].path.endswith("t1") and signature_ok(bounces["secret"], receiver.calls[0])
    assert cli_json(run_cli("webhooks", "show", str(bounces["id"]), "--json"))["events"] == ["bounced", "complained"]


def rows() -> list[WebhookDelivery]:
    return list(WebhookDelivery.select().order_by(WebhookDelivery.id))


def retry_when_due(relay, test_clock, index: int, failed: int) -> None:
    """Wait for the ``failed``-th failed call of the index-th delivery, then move the clock to its
    retry and sweep: exactly that delivery is enqueued."""
    assert wait_for(lambda: rows()[index].attempts == failed and rows()[index].status == "pending"), rows()[index]
    test_clock.advance(webhooks.SCHEDULE[failed - 1] + 1)
    assert queue.sweep_webhooks(relay.queue) == 1


def test_a_receiver_that_answers_500_gets_each_event_once_after_the_retries_in_order(
    relay, account, sink, receiver, run_cli, test_clock
):
    failures: dict[str, int] = {}

    def answer(n, body):  # every event fails three times before it is taken
        key = json.loads(body)["type"]
        failures[key] = failures.get(key, 0) + 1
        return 500 if failures[key] <= 3 else 204

    receiver.answer = answer
    hook = create(run_cli, receiver.url)
    message_id = submit(relay, account, "alice@example.test")
    wait_for(lambda: Message.get_by_id(message_id).status == "delivered")
    first, second = wait_for(lambda: len(rows()) == 2 and rows())
    assert (first.event_type, second.event_type) == ("accepted", "delivered")

    for failed in (1, 2, 3):
        retry_when_due(relay, test_clock, 0, failed)
        # The delivered event waits for the accepted one: no call is made for it meanwhile.
        assert rows()[1].attempts == 0
    for failed in (1, 2, 3):  # its turn came when the accepted one went through
        retry_when_due(relay, test_clock, 1, failed)
    assert wait_for(lambda: [r.status for r in rows()] == ["delivered", "delivered"])
    assert [r.attempts for r in rows()] == [4, 4]

    assert [c.payload["type"] for c in receiver.calls] == ["message.accepted"] * 4 + ["message.delivered"] * 4
    assert receiver.types() == ["message.accepted", "message.delivered"]  # each once, in order
    assert all(signature_ok(hook["secret"], c) for c in receiver.calls)
    # A retry is the same message: one webhook-id per event, the same body each time.
    assert len({c.headers["webhook-id"] for c in receiver.calls}) == 2
    assert len({c.body for c in receiver.calls}) == 2
    codes = [c.status_code for c in WebhookCall.select().order_by(WebhookCall.id)]
    assert codes == [500, 500, 500, 204] * 2
    test_clock.advance(3600)
    assert queue.sweep_webhooks(relay.queue) == 0  # nothing is sent again


def test_a_loopback_endpoint_is_refused_without_the_setting(app, run_cli, dns_server, receiver):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    for url, kind in (
        (receiver.url, "loopback"),
        ("http://[::1]:8025/", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
    ):
        result = run_cli("webhooks", "create", url)
        assert result.exit_code != 0 and f"a {kind} address" in result.output, result.output
        assert "WEBHOOK_ALLOW_PRIVATE" in result.output and "Traceback" not in result.output
    dns_server.a("hooks.shop.test", "127.0.0.5")
    result = run_cli("webhooks", "create", "https://hooks.shop.test/mail")
    assert result.exit_code != 0 and "hooks.shop.test resolves to 127.0.0.5, a loopback address" in result.output
    for url, sentence in (
        ("ftp://hooks.example.com/", "is not an http:// or https:// URL"),
        ("https://user:pw@hooks.example.com/", "user name or password"),
        ("https://nowhere.test/", "nowhere.test does not resolve"),
    ):
        result = run_cli("webhooks", "create", url)
        assert result.exit_code != 0 and sentence in result.output, result.output
    result = run_cli("webhooks", "create", "https://8.8.8.8/hook", "--events", "bouncd")
    assert result.exit_code != 0 and "'bouncd' is not an event type" in result.output
    assert cli_json(run_cli("webhooks", "list", "--json")) == []


def test_a_name_that_resolves_to_loopback_later_is_refused_at_the_call(app, relay, dns_server, receiver, run_cli):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    dns_server.a("hooks.shop.test", "8.8.8.8")  # public when the endpoint is made (never connected to)
    hook = create(run_cli, f"http://hooks.shop.test:{receiver.port}/mail")
    dns_server.a("hooks.shop.test", "127.0.0.1")  # then the name moves to the machine itself
    run_cli("webhooks", "test", str(hook["id"]))

    call = wait_for(lambda: WebhookCall.get_or_none(WebhookCall.webhook == hook["id"]))
    assert call.status_code is None and not call.ok
    assert call.excerpt.startswith("refused: hooks.shop.test resolves to 127.0.0.1, a loopback address")
    assert receiver.calls == []


def test_a_test_event_and_a_replay_of_a_failed_call(relay, receiver, run_cli, test_clock):
    receiver.answer = lambda n, body: 503
    hook = create(run_cli, receiver.url)
    out = run_cli("webhooks", "test", str(hook["id"]))
    assert out.exit_code == 0 and "test event msg_" in out.output
    for failed in range(1, len(webhooks.SCHEDULE) + 1):  # every retry fails: the delivery gives up
        retry_when_due(relay, test_clock, 0, failed)
    row = wait_for(lambda: (r := WebhookDelivery.get()).status == "failed" and r)
    assert row.attempts == len(webhooks.SCHEDULE) + 1 == len(receiver.calls)
    assert receiver.calls[0].payload["type"] == "webhook.test"
    assert receiver.calls[0].payload["data"]["webhook"] == hook["id"] and signature_ok(
        hook["secret"], receiver.calls[0]
    )

    receiver.answer = lambda n, body: 200
    out = run_cli("webhooks", "replay", str(row.id))
    assert out.exit_code == 0, out.output
    wait_for(lambda: WebhookDelivery.get().status == "delivered")
    assert receiver.types() == ["webhook.test"] and receiver.calls[-1].body == receiver.calls[0].body
    again = run_cli("webhooks", "replay", str(row.id))
    assert again.exit_code != 0 and "was delivered already" in again.output
    assert [e.action for e in AuditEntry.select().order_by(AuditEntry.id)] == [
        "webhook.create",
        "webhook.test",
        "webhook.replay",
    ]


def test_an_endpoint_failing_for_three_days_is_turned_off_with_an_alert(relay, receiver, run_cli, test_clock):
    receiver.answer = lambda n, body: 500
    hook = create(run_cli, receiver.url)
    run_cli("webhooks", "test", str(hook["id"]))
    wait_for(lambda: len(receiver.calls) == 1)
    test_clock.advance(webhooks.DISABLE_AFTER.total_seconds() - 60)
    run_cli("webhooks", "test", str(hook["id"]))
    wait_for(lambda: len(receiver.calls) == 3)  # the second test event, and the first one's retry
    assert cli_json(run_cli("webhooks", "show", str(hook["id"]), "--json"))["active"] is True
    test_clock.advance(120)
    run_cli("webhooks", "test", str(hook["id"]))
    alert = wait_for(lambda: Alert.get_or_none(Alert.kind == "webhook-disabled"))
    assert alert.subject == f"webhook {hook['id']}" and "was turned off" in alert.text
    shown = cli_json(run_cli("webhooks", "show", str(hook["id"]), "--json"))
    assert shown["active"] is False and "every call failed since" in shown["disabled_reason"]
    calls = len(receiver.calls)
    run_cli("webhooks", "test", str(hook["id"]))
    test_clock.advance(3600)
    assert queue.sweep_webhooks(relay.queue) == 0 and len(receiver.calls) == calls  # off: nothing goes out

    receiver.answer = lambda n, body: 200
    assert run_cli("webhooks", "enable", str(hook["id"])).exit_code == 0
    wait_for(lambda: WebhookDelivery.select().where(WebhookDelivery.status == "pending").count() == 0)
    assert cli_json(run_cli("webhooks", "show", str(hook["id"]), "--json"))["failing_since"] is None


def test_every_other_event_type_reaches_the_receiver(app, relay, account, sink, receiver, run_cli):
    hook = create(run_cli, receiver.url)
    message_id = submit(relay, account, "alice@example.test")
    wait_for(lambda: Message.get_by_id(message_id).status == "delivered")
    others = [t for t in events.TYPES if t not in ("accepted", "delivered")]
    with db.atomic_write():  # the outcomes as their own code records them: in a transaction, through events
        events.record([events.occurred(message_id, t, "alice@example.test", reason="r", by="x") for t in others])
    expected = ["message.accepted", "message.delivered"] + [f"message.{t}" for t in others]
    assert wait_for(lambda: receiver.types() == expected), receiver.types()
    assert all(signature_ok(hook["secret"], c) for c in receiver.calls)
    assert run_cli("webhooks", "delete", str(hook["id"])).exit_code == 0
    assert WebhookDelivery.select().count() == 0 and WebhookCall.select().count() == 0


def test_a_failed_call_is_retried_by_the_workers_when_its_delay_is_over(relay, receiver, run_cli):
    receiver.answer = lambda n, body: 500 if n == 0 else 200
    hook = create(run_cli, receiver.url)
    run_cli("webhooks", "test", str(hook["id"]))
    # No sweep and no clock moved: the worker's own delayed task makes the second call (after 5 s).
    assert wait_for(lambda: WebhookDelivery.get().status == "delivered", timeout=30)
    assert [c.answered for c in receiver.calls] == [500, 200]
    assert receiver.calls[0].headers["webhook-id"] == receiver.calls[1].headers["webhook-id"]


def test_the_events_of_one_commit_are_written_with_one_insert(
    app, relay, account, sink, receiver, run_cli, monkeypatch
):
    create(run_cli, receiver.url)
    create(run_cli, receiver.url.replace("t1", "t2"))
    message_id = submit(relay, account, "alice@example.test")
    wait_for(lambda: Message.get_by_id(message_id).status == "delivered")
    wait_for(lambda: WebhookDelivery.select().count() == 4)
    inserts = []
    real = webhooks.insert_pending

    def counted(batches):
        inserts.append(sum(len(b) for b in batches))
        return real(batches)

    monkeypatch.setattr(webhooks, "insert_pending", counted)
    types = ["opened", "clicked", "opened", "unsubscribed", "complained"]
    with db.atomic_write():
        events.record([events.occurred(message_id, t, "alice@example.test") for t in types])
    assert inserts == [10]  # five events for two endpoints, one statement, in the events' own transaction
    assert wait_for(lambda: len(receiver.accepted()) == 14)


def test_pending_webhooks_commit_with_their_events_or_not_at_all_and_a_failing_feed_stores_the_events(
    app, relay, account, sink, receiver, run_cli, monkeypatch
):
    """No crash between the events' commit and their webhooks' rows can lose a webhook: the rows are
    written in the same transaction (a savepoint of it), and roll back with it."""
    create(run_cli, receiver.url)
    message_id = submit(relay, account, "alice@example.test")
    wait_for(lambda: Message.get_by_id(message_id).status == "delivered")
    wait_for(lambda: WebhookDelivery.select().count() == 2)

    class Abandoned(Exception):
        pass

    with pytest.raises(Abandoned), db.atomic_write():
        events.record([events.occurred(message_id, "opened", "alice@example.test")])
        assert WebhookDelivery.select().count() == 3  # already there, before the commit
        raise Abandoned
    assert WebhookDelivery.select().count() == 2  # rolled back with the event

    def broken(batches):
        raise RuntimeError("the feed fails")

    monkeypatch.setattr(webhooks, "insert_pending", broken)
    with db.atomic_write():
        events.record([events.occurred(message_id, "clicked", "alice@example.test", url="https://shop.test/")])
    assert [e["type"] for e in events.timeline(message_id)][-1] == "clicked"  # the event is stored all the same
    assert WebhookDelivery.select().count() == 2


def test_a_message_purged_by_retention_takes_its_webhook_deliveries_and_calls(
    relay, account, sink, receiver, run_cli, test_clock
):
    from appliance import retention

    hook = create(run_cli, receiver.url)
    message_id = submit(relay, account, "alice@example.test")
    assert wait_for(lambda: len(receiver.accepted()) == 2)
    assert wait_for(lambda: WebhookCall.select().count() == 2)
    test_clock.advance(91 * 24 * 3600)  # past RETENTION_DAYS
    retention.purge(relay.queue.settings)
    assert Message.get_or_none(Message.id == message_id) is None
    assert WebhookDelivery.select().count() == 0 and WebhookCall.select().count() == 0
    assert cli_json(run_cli("webhooks", "show", str(hook["id"]), "--json"))["calls"] == []


@pytest.fixture
def https_receiver(tls_ca):
    """A receiver over HTTPS whose certificate (for 127.0.0.1) comes from the test's throwaway CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls_ca.cert), str(tls_ca.key))
    server = Receiver(tls=context).start()
    yield server
    server.stop()


def test_an_https_receiver_gets_the_event_when_its_certificate_is_trusted_and_none_when_not(
    relay, https_receiver, run_cli, tls_ca, monkeypatch
):
    hook = create(run_cli, https_receiver.url)
    run_cli("webhooks", "test", str(hook["id"]))
    call = wait_for(lambda: WebhookCall.get_or_none(WebhookCall.webhook == hook["id"]))
    assert call.status_code is None and "CERTIFICATE_VERIFY_FAILED" in call.excerpt  # the system CAs: untrusted
    assert https_receiver.calls == []

    monkeypatch.setenv("SSL_CERT_FILE", str(tls_ca.ca))  # what OpenSSL trusts by default, as an admin would add a CA
    (row,) = WebhookDelivery.select()
    assert run_cli("webhooks", "replay", str(row.id)).exit_code == 0
    assert wait_for(lambda: WebhookDelivery.get().status == "delivered")
    (received,) = https_receiver.calls
    assert signature_ok(hook["secret"], received) and received.headers["host"] == f"127.0.0.1:{https_receiver.port}"
