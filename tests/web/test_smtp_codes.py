"""The SMTP reply code reference: every class and code of the knowledge base with what it means and
what to do, and every code in a message timeline linking to its entry."""

from __future__ import annotations

import datetime as dt
import re

from appliance import db
from appliance.models import Attempt, Delivery
from appliance.web import smtp_codes

# mySMTP's knowledge base, "SMTP Status Codes and Their Meanings" and its limits table.
KNOWLEDGE_BASE_CODES = (
    200,
    211,
    214,
    220,
    221,
    250,
    251,
    334,
    354,
    400,
    421,
    450,
    451,
    452,
    500,
    501,
    502,
    503,
    504,
    550,
    551,
    552,
    553,
    554,
)


def test_the_reference_page_lists_every_class_and_code_of_the_knowledge_base_with_what_to_do(client):
    page = client.get("/smtp-codes/").get_data(as_text=True)
    for digit in "12345":
        assert f'id="class-{digit}"' in page and f"{digit}xx " in page
    for code in KNOWLEDGE_BASE_CODES:
        row = re.search(rf'<tr id="code-{code}">(.*?)</tr>', page, re.S)
        assert row, code
        meaning, todo = re.findall(r"<td>(.*?)</td>", row.group(1), re.S)[-2:]
        assert meaning == smtp_codes.BASIC[code].replace("'", "&#39;") and todo, code
    assert 'id="code-5.1.1"' in page and "The mailbox does not exist" in page
    assert "Send more slowly or with fewer connections" in page  # 421, from the limits table


def test_every_code_in_a_timeline_links_to_its_entry_and_an_unlisted_one_to_its_class(client, store_message):
    message_id = store_message("Order 7")
    delivery = Delivery.get(Delivery.message == message_id)
    started = dt.datetime(2025, 6, 2, 12, 0)
    with db.atomic_write():
        Attempt.create(
            delivery=delivery,
            started_at=started,
            outcome="deferred",
            code=421,
            enhanced_code="4.7.28",
            text="421 4.7.28 unusual rate of mail",
            mx_host="mx.example.com",
        )
        Attempt.create(
            delivery=delivery,
            started_at=started,
            outcome="bounced",
            code=550,
            enhanced_code="5.1.1",
            text="550 5.1.1 no such user",
            mx_host="mx.example.com",
        )
        Attempt.create(
            delivery=delivery,
            started_at=started,
            outcome="bounced",
            code=599,
            enhanced_code="",
            text="599 something new",
            mx_host="mx.example.com",
        )
    page = client.get(f"/messages/{message_id}").get_data(as_text=True)
    links = re.findall(r'<a class="code-link" href="([^"]+)"', page)
    assert "/smtp-codes/#code-421" in links and "/smtp-codes/#class-4" in links  # 4.7.28 is not listed
    assert "/smtp-codes/#code-550" in links and "/smtp-codes/#code-5.1.1" in links
    assert "/smtp-codes/#class-5" in links  # 599
    reference = client.get("/smtp-codes/").get_data(as_text=True)
    for link in links:
        assert f'id="{link.split("#")[1]}"' in reference, link


def test_the_reference_page_needs_a_sign_in(anon):
    response = anon.get("/smtp-codes/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
