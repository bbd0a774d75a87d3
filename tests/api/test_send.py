"""POST /api/v1/messages end to end: requests and curl against the served appliance, its relay and
workers running, the mail reaching a sink MX signed with both DKIM keys."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import subprocess

import requests

from appliance.models import Event, Message, SmtpAccount
from tests.support.dkim import assert_both_signatures_verify
from tests.support.mail import settled
from tests.support.relay import verify_domain
from tests.support.wait import wait_for

ORDER = {
    "from": "Shop <orders@shop.test>",
    "to": ["ann@example.test"],
    "subject": "Order 1001",
    "text": "Thanks for your order.",
}


def _recipients(sink) -> list[str]:
    return sorted(r for received in sink.messages for r in received.rcpts)


def _parsed(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.default)


def test_a_json_message_with_html_and_an_attachment_reaches_the_sink_signed(app, relay, sink, api, shop_key):
    pdf = b"%PDF-1.4 an invoice"
    payload = ORDER | {
        "cc": "carl@example.test",
        "bcc": ["bea@example.test"],
        "reply_to": "help@shop.test",
        "html": "<p>Thanks for your <b>order</b>.</p>",
        "headers": {"X-Order-Id": "1001"},
        "attachments": [
            {"filename": "invoice.pdf", "content_type": "application/pdf", "content": base64.b64encode(pdf).decode()}
        ],
        "tags": ["order", "invoice"],
    }
    response = api.send(shop_key, payload)
    assert response.status_code == 202
    message_id = response.json()["id"]
    assert response.headers["Location"] == f"/api/v1/messages/{message_id}"

    wait_for(lambda: len(_recipients(sink)) == 3)
    assert _recipients(sink) == ["ann@example.test", "bea@example.test", "carl@example.test"]
    copy = sink.messages[0].data
    assert_both_signatures_verify(app, copy)
    msg = _parsed(copy)
    assert msg["From"] == "Shop <orders@shop.test>" and msg["Cc"] == "carl@example.test"
    assert msg["Bcc"] is None and msg["X-Order-Id"] == "1001" and msg["Reply-To"] == "help@shop.test"
    assert "with HTTP" in msg["Received"]
    assert msg.get_body(("plain",)).get_content().strip() == "Thanks for your order."
    assert "<b>order</b>" in msg.get_body(("html",)).get_content()
    (attachment,) = msg.iter_attachments()
    assert attachment.get_filename() == "invoice.pdf" and attachment.get_content() == pdf
    with app.app_context():
        stored = Message.get_by_id(message_id)
        assert stored.account.username.endswith(".shop.smtp") and stored.mail_from == "orders@shop.test"
        accepted = Event.get((Event.message == message_id) & (Event.type == "accepted"))
        assert json.loads(accepted.details) == {"via": "api", "tags": ["order", "invoice"]}


def test_curl_sends_a_raw_message_whose_bcc_is_delivered_and_removed(app, relay, sink, web, shop_key, checker):
    raw = b"From: orders@shop.test\nTo: ann@example.test\nBcc: bea@example.test\nSubject: Raw\n\nSent as it is.\n"
    done = subprocess.run(
        [
            "curl", "-sS", "-w", "\n%{http_code} %{content_type}", "-X", "POST",
            "-H", f"Authorization: Bearer {shop_key}", "-H", "Content-Type: message/rfc822",
            "--data-binary", "@-", f"{web}/api/v1/messages",
        ],
        input=raw, capture_output=True, check=True, timeout=30,
    )  # fmt: skip
    body, _, status_line = done.stdout.rpartition(b"\n")
    status, content_type = status_line.decode().split(" ", 1)
    checker.check("POST", "/api/v1/messages", int(status), content_type, body)
    assert status == "202"
    message_id = json.loads(body)["id"]
    wait_for(lambda: len(_recipients(sink)) == 2)
    assert _recipients(sink) == ["ann@example.test", "bea@example.test"]
    for received in sink.messages:
        assert b"Bcc:" not in received.data and b"Sent as it is.\r\n" in received.data
        assert_both_signatures_verify(app, received.data)
    with app.app_context():
        assert [d.rcpt for d in settled(message_id, "delivered")] == ["ann@example.test", "bea@example.test"]


def test_a_retry_with_the_same_idempotency_key_creates_one_message(app, relay, sink, api, shop_key):
    first = api.send(shop_key, ORDER, headers={"Idempotency-Key": "order-1001"})
    again = api.send(shop_key, ORDER, headers={"Idempotency-Key": "order-1001"})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    other = api.send(shop_key, ORDER | {"subject": "Order 1002"}, headers={"Idempotency-Key": "order-1001"})
    assert other.status_code == 422 and other.json()["reason"] == "idempotency-key-reused"
    wait_for(lambda: len(sink.messages) == 1)
    with app.app_context():
        assert Message.select().count() == 1
    fresh = api.send(shop_key, ORDER, headers={"Idempotency-Key": "order-1002"})
    assert fresh.status_code == 202 and fresh.json() != first.json()


def test_a_key_of_one_account_cannot_send_as_another_accounts_sender(app, relay, api, account, make_key):
    with app.app_context():
        verify_domain("other.test")
        SmtpAccount.update(authorized_domains="shop.test").where(SmtpAccount.username == account[0]).execute()
        other = SmtpAccount.create(name="Other", username="99.other.smtp", authorized_domains="other.test")
    other_key = make_key(other.username)
    response = api.send(other_key, ORDER)
    assert response.status_code == 403
    problem = response.json()
    assert problem["reason"] == "sender-not-authorized"
    refusal = "Sender address not authorized: this account may not send as orders@shop.test"
    assert problem["smtp_reply"] == f"553 5.7.1 {refusal}" and problem["detail"] == refusal
    assert problem["errors"] == [{"field": "from", "detail": problem["detail"]}]
    assert api.send(other_key, ORDER | {"from": "info@other.test"}).status_code == 202


def test_a_revoked_key_is_refused_at_once(app, relay, api, make_key, account, run_cli):
    key = make_key(account[0])
    assert api.send(key, ORDER).status_code == 202
    prefix = key.split("_")[1]
    assert run_cli("api-keys", "revoke", prefix).exit_code == 0
    response = api.send(key, ORDER)
    assert response.status_code == 401 and response.json()["reason"] == "invalid-api-key"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_bad_requests_get_problem_documents_naming_the_field(relay, api, shop_key):
    bad_json = api.send(shop_key, data=b'{"from": ', headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["reason"] == "bad-json"
    missing = api.send(shop_key, {"to": ["ann@example.test"], "text": "hi"})
    assert missing.status_code == 422 and missing.json()["reason"] == "invalid-request"
    assert {"field": "from", "detail": "Field required"} in missing.json()["errors"]
    no_body = api.send(shop_key, {"from": "orders@shop.test", "to": "ann@example.test"})
    assert [e["field"] for e in no_body.json()["errors"]] == ["text"]
    bad_file = api.send(shop_key, ORDER | {"attachments": [{"filename": "a.txt", "content": "***"}]})
    assert bad_file.status_code == 422 and bad_file.json()["errors"][0]["field"] == "attachments[0].content"
    bad_rcpt = api.send(shop_key, ORDER | {"to": ["ann@example.test", "nobody"]})
    assert bad_rcpt.status_code == 422 and bad_rcpt.json()["errors"][0]["field"] == "to[1]"
    injected = api.send(shop_key, ORDER | {"headers": {"X-Evil": "a\r\nBcc: x@example.test"}})
    assert injected.json()["errors"] == [{"field": "headers.X-Evil", "detail": "line breaks are not allowed"}]
    unknown = api.send(shop_key, ORDER | {"colour": "red"})
    assert unknown.json()["errors"][0]["field"] == "colour"
    form = api.send(shop_key, data={"from": "x"})
    assert form.status_code == 415 and form.json()["reason"] == "unsupported-media-type"


def test_no_key_a_wrong_key_and_a_key_without_the_send_scope_are_refused(relay, api, make_key, account):
    assert api.send(None, ORDER).json()["reason"] == "missing-api-key"
    assert api.send("ak_aaaaaaaaaaaa_wrong", ORDER).status_code == 401
    read_only = api.send(make_key(account[0], "read"), ORDER)
    assert read_only.status_code == 403 and read_only.json()["reason"] == "insufficient-scope"
    assert api.send(make_key(account[0], "manage"), ORDER).status_code == 202


def test_a_key_over_its_rate_limit_gets_429_with_retry_after(app, relay, api, shop_key):
    app.config["API_RATE_LIMIT"] = 2
    answers = [api.send(shop_key, ORDER) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert answers[2].json()["reason"] == "rate-limited" and int(answers[2].headers["Retry-After"]) >= 1


def test_a_message_over_the_size_limit_gets_413(app, relay, api, shop_key):
    app.config["MAX_MESSAGE_SIZE"] = 2000
    response = api.send(shop_key, ORDER | {"text": "x" * 70 * 40})
    assert response.status_code == 413 and response.json()["smtp_reply"] == "552 5.3.4 Message size exceeds limit"


def test_a_disabled_account_and_a_client_outside_its_ip_rules_are_refused(app, relay, api, account, shop_key):
    with app.app_context():
        SmtpAccount.update(ip_rules="192.0.2.0/24").where(SmtpAccount.username == account[0]).execute()
    outside = api.send(shop_key, ORDER)
    assert outside.status_code == 403 and outside.json()["reason"] == "ip-not-authorized"
    with app.app_context():
        SmtpAccount.update(ip_rules="", active=False).where(SmtpAccount.username == account[0]).execute()
    assert api.send(shop_key, ORDER).json()["reason"] == "account-disabled"


def test_an_unknown_api_path_or_method_gets_a_problem_document_and_the_dashboard_its_page(api, web, shop_key):
    missing = requests.get(f"{web}/api/v1/nothing", headers={"Authorization": f"Bearer {shop_key}"}, timeout=10)
    assert missing.status_code == 404 and missing.headers["Content-Type"] == "application/problem+json"
    assert missing.json()["reason"] == "not-found"
    wrong = requests.delete(f"{web}/api/v1/messages", timeout=10)
    assert wrong.status_code == 405 and wrong.json()["reason"] == "method-not-allowed"
    assert set(wrong.headers["Allow"].split(", ")) >= {"GET", "POST"}
    page = requests.get(f"{web}/no-such-page", timeout=10)
    assert page.status_code == 404 and page.headers["Content-Type"].startswith("text/html")


def test_requests_with_one_idempotency_key_at_the_same_moment_create_one_message(app, relay, api, shop_key):
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: api.send(shop_key, ORDER, headers={"Idempotency-Key": "burst"}), range(4)))
    assert [a.status_code for a in answers] == [202] * 4
    assert len({a.json()["id"] for a in answers}) == 1
    with app.app_context():
        assert Message.select().count() == 1


def test_a_list_address_sends_each_subscribed_member_a_copy_as_over_smtp(app, relay, sink, api, shop_key, account):
    from appliance import accounts, lists, suppressions

    with app.app_context():
        made = lists.create("Newsletter", [accounts.find(account[0])])
        lists.import_csv(made.id, b"email\nann@example.test\nbob@example.test\ncat@example.test\n")
        suppressions.add("cat@example.test")
        other = lists.create("Other", [])
    address = f"{made.id}@lists.relay.test"
    response = api.send(shop_key, ORDER | {"to": [address], "subject": "News"})
    assert response.status_code == 202
    wait_for(lambda: len(_recipients(sink)) == 2, timeout=30)
    assert _recipients(sink) == ["ann@example.test", "bob@example.test"]  # cat is suppressed: skipped
    assert {_parsed(m.data)["To"] for m in sink.messages} == {"ann@example.test", "bob@example.test"}
    with app.app_context():
        assert Message.get_by_id(response.json()["id"]).mailing_list == made.id

    refused = api.send(shop_key, ORDER | {"to": [f"{other.id}@lists.relay.test"]})
    assert refused.status_code == 403 and "is not tied to the list" in refused.json()["detail"]
    assert refused.json()["smtp_reply"].startswith("550 5.7.1")  # what SMTP answers at RCPT TO
    mixed = api.send(shop_key, ORDER | {"to": [address, "ann@example.test"]})
    assert mixed.status_code == 422 and "the only recipient" in mixed.json()["detail"]
    assert mixed.json()["errors"][0]["field"] == "to[0]"
