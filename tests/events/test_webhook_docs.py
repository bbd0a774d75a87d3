"""The signature checks of docs/webhooks.md, run as written (Python, and PHP with php-cli) against a
real signed call of the appliance to a receiver on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance import queue, webhooks
from tests.support.wait import wait_for
from tests.support.webhooks import Receiver

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def snippet(name: str) -> str:
    match = re.search(rf"<!-- snippet: {name} -->\n```\w+\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"docs/webhooks.md has no snippet {name}"
    return match.group(1)


@pytest.fixture
def overrides(overrides):
    return {**overrides, "WEBHOOK_ALLOW_PRIVATE": True, "WORKERS": 2, "WORKER_POLL_INTERVAL": 0.05}


@pytest.fixture
def signed_call(app):
    """A test event as the receiver got it, and the endpoint's secret."""
    from appliance.serve import QueueService

    receiver = Receiver().start()
    workers = QueueService(app.config)
    workers.start()
    try:
        with app.app_context():
            hook = webhooks.create(app.config, receiver.url)
            row = webhooks.send_test(hook.id)
            queue.runtime(app.config).enqueue_webhooks([webhooks.Next(row.msg_id, 0)])
            (call,) = wait_for(lambda: receiver.calls)
    finally:
        workers.stop()
        receiver.stop()
    return hook.secret, call


def cases(secret: str, call) -> list[tuple[str, dict, bytes, bool]]:
    """(secret, headers, body, expected): the real call, a changed body, another secret, an old call."""
    old = {**call.headers, "webhook-timestamp": str(int(call.headers["webhook-timestamp"]) - 3600)}
    return [
        (secret, call.headers, call.body, True),
        (secret, call.headers, call.body.replace(b"test", b"tesT"), False),
        (webhooks.endpoints.new_secret(), call.headers, call.body, False),
        (secret, old, call.body, False),
    ]


def test_the_python_snippet_verifies_a_real_call_and_refuses_changed_ones(signed_call):
    namespace: dict = {}
    exec(snippet("python"), namespace)  # noqa: S102 — the documented code, as a reader copies it
    results = [namespace["verify_webhook"](s, h, b) for s, h, b, _ in cases(*signed_call)]
    assert results == [expected for *_, expected in cases(*signed_call)]


def test_the_python_library_snippet_gives_the_event(signed_call):
    namespace: dict = {}
    exec(snippet("python-library"), namespace)  # noqa: S102
    secret, call = signed_call
    event = namespace["verified_event"](secret, call.headers, call.body)
    assert event["type"] == "webhook.test" and event["data"]["message"].startswith("This is a test event")
    assert [namespace["verified_event"](s, h, b) is not None for s, h, b, _ in cases(*signed_call)] == [
        True,
        False,
        False,
        False,
    ]


@pytest.mark.skipif(shutil.which("php") is None, reason="php-cli is not installed")
def test_the_php_snippet_verifies_a_real_call_and_refuses_changed_ones(signed_call, tmp_path):
    script = tmp_path / "verify.php"
    script.write_text(
        "<?php\n"
        + snippet("php")
        + "\n$cases = json_decode(stream_get_contents(STDIN), true);\n"
        + "foreach ($cases as $c) {\n"
        + "    echo verify_webhook($c['secret'], $c['id'], $c['timestamp'], $c['signature'], base64_decode($c['body']))"
        + ' ? "yes\\n" : "no\\n";\n}\n'
    )
    given = [
        {
            "secret": s,
            "id": h["webhook-id"],
            "timestamp": h["webhook-timestamp"],
            "signature": h["webhook-signature"],
            "body": base64.b64encode(b).decode(),
        }
        for s, h, b, _ in cases(*signed_call)
    ]
    done = subprocess.run(["php", str(script)], input=json.dumps(given), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["yes", "no", "no", "no"]
