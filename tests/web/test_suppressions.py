"""Suppressions page: list, search, add, remove."""

from __future__ import annotations

import pytest
from markupsafe import escape

from appliance import suppressions
from appliance.models import AuditEntry, Suppression


def test_the_empty_list_explains_where_suppressions_come_from(client):
    assert "No suppressed address." in client.get("/suppressions/").get_data(as_text=True)


def test_adding_an_address_lowercases_it_and_lists_it(client):
    response = client.form("/suppressions/", {"address": "Bob <Bob@Example.COM>", "reason": "asked"})
    assert response.status_code == 302
    assert Suppression.get().address == "bob@example.com"
    page = client.get("/suppressions/").get_data(as_text=True)
    assert "bob@example.com" in page and "asked" in page


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("not-an-address", "Write a whole e-mail address"),
        ("@example.com", "Write a whole e-mail address"),
    ],
)
def test_a_bad_address_is_refused_with_a_message(client, address, message):
    response = client.form("/suppressions/", {"address": address})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert Suppression.select().count() == 0


def test_adding_an_address_twice_says_it_is_already_suppressed(client):
    client.form("/suppressions/", {"address": "a@example.com"})
    response = client.form("/suppressions/", {"address": "a@example.com"})
    assert "a@example.com is already suppressed." in response.get_data(as_text=True)


def test_search_finds_by_part_of_the_address(client):
    Suppression.create(address="a@one.test")
    Suppression.create(address="b@two.test")
    page = client.get("/suppressions/", query_string={"q": "two"}).get_data(as_text=True)
    assert "b@two.test" in page and "a@one.test" not in page


def test_removing_an_address_takes_it_off_the_list(client):
    row = Suppression.create(address="a@example.com")
    client.form(f"/suppressions/{row.id}/delete")
    assert Suppression.select().count() == 0


def test_a_suppressed_recipient_is_recorded_as_suppressed_by_intake(client, store_message):
    client.form("/suppressions/", {"address": "gone@example.com"})
    store_message(rcpts=("gone@example.com",))
    assert "status-suppressed" in client.get("/messages/").get_data(as_text=True)


def test_a_viewer_cannot_add_or_remove(viewer_client):
    row = Suppression.create(address="a@example.com")
    assert viewer_client.form("/suppressions/", {"address": "b@example.com"}).status_code == 403
    assert viewer_client.form(f"/suppressions/{row.id}/delete").status_code == 403
    assert Suppression.select().count() == 1


@pytest.mark.parametrize("address", ["not-an-address", "bob@", "a@example.com"])
def test_the_cli_and_the_dashboard_refuse_the_same_address_with_the_same_sentence(client, run_cli, address):
    suppressions.add("a@example.com")
    before = [(s.address, s.source, s.reason) for s in Suppression.select()]
    result = run_cli("suppressions", "add", address)
    assert result.exit_code != 0
    sentence = result.stderr.strip().removeprefix("Error: ")
    response = client.form("/suppressions/", {"address": address})
    assert response.status_code == 400 and str(escape(f"{sentence}.")) in response.get_data(as_text=True)
    assert [(s.address, s.source, s.reason) for s in Suppression.select()] == before


def test_an_address_added_through_either_edge_is_stored_and_audited_the_same(client, run_cli):
    assert run_cli("suppressions", "add", "Cli <Cli@Example.com>", "--reason", "asked by phone").exit_code == 0
    assert (
        client.form("/suppressions/", {"address": "Web <Web@Example.com>", "reason": "asked by phone"}).status_code
        == 302
    )
    rows = {s.address: (s.source, s.reason, s.stream, s.domain) for s in Suppression.select()}
    assert rows == {
        "cli@example.com": ("manual", "asked by phone", "", ""),
        "web@example.com": ("manual", "asked by phone", "", ""),
    }
    entries = {e.subject: (e.action, e.detail) for e in AuditEntry.select()}
    assert (
        entries["address cli@example.com"]
        == entries["address web@example.com"]
        == ("suppression.add", "asked by phone")
    )
    web_row = Suppression.get(Suppression.address == "web@example.com")
    assert run_cli("suppressions", "remove", "cli@example.com").exit_code == 0
    assert client.form(f"/suppressions/{web_row.id}/delete", {}).status_code == 302
    assert not Suppression.select().exists()
    removals = [e.subject for e in AuditEntry.select().where(AuditEntry.action == "suppression.remove")]
    assert sorted(removals) == ["address cli@example.com", "address web@example.com"]
