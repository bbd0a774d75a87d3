"""DMARC aggregate reports mailed to dmarc-reports@HOSTNAME on port 25, as Google (zip) and Microsoft
(gzip) send them: read, refused or stored before the 250; `appliance dmarc` lists, shows and imports
them. (The DMARC page: tests/web/test_dmarc.py.)

The reports go over real SMTP with STARTTLS to the MX listener.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import zipfile
from email.message import EmailMessage

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance import dmarc
from appliance.models import DmarcRecord, DmarcReport, Message
from tests.support.dmarc import (
    GOOGLE_RECORDS,
    REPORT_ADDRESS,
    google_report,
    microsoft_report,
    record,
    report_xml,
    send,
    stored,
)


@pytest.fixture(autouse=True)
def _shop(shop_domain):
    """shop.test, the domain of the reports, is a sending domain of the appliance."""


def test_google_zip_and_microsoft_gzip_reports_are_stored(app, smtp_server):
    code, text = send(smtp_server, google_report(report_xml("google.com", "10923567354345811234", GOOGLE_RECORDS)))
    assert code == 250, text
    microsoft = report_xml("Enterprise Outlook", "7d3c0e2a", [record("192.0.2.10", 40)])
    code, text = send(smtp_server, microsoft_report(microsoft))
    assert code == 250, text
    with app.app_context():
        google = DmarcReport.get(DmarcReport.org_name == "google.com")
        assert (google.domain, google.policy, google.pct) == ("shop.test", "none", 100)
        assert google.begin.isoformat() == "2025-12-04T00:00:00"
        assert Message.get_by_id(google.message_id).direction == "inbound"
        rows = {r.source_ip: r for r in google.records}
        assert rows["192.0.2.10"].count == 120 and (rows["192.0.2.10"].dkim, rows["192.0.2.10"].spf) == ("pass", "pass")
        assert rows["198.51.100.7"].header_from == "shop.test" and rows["198.51.100.7"].dkim == "fail"
        assert '"mailer.example"' in rows["198.51.100.7"].dkim_results
        assert DmarcReport.get(DmarcReport.org_name == "Enterprise Outlook").records.count() == 1


def test_a_report_received_twice_is_stored_once(app, smtp_server):
    message = google_report(report_xml("google.com", "42", GOOGLE_RECORDS), "42")
    assert send(smtp_server, message)[0] == 250
    assert send(smtp_server, message)[0] == 250  # accepted again, so the reporter stops retrying
    with app.app_context():
        assert DmarcReport.select().count() == 1
        assert DmarcRecord.select().count() == 3


def zip_bomb() -> bytes:
    """A zip of some 60 KB that holds 60 MB of XML (over MAX_XML_SIZE), and says so truthfully."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("bomb.xml", "w", force_zip64=True) as member,
    ):
        member.write(b"<feedback>")
        for _ in range(60):
            member.write(b" " * (1024 * 1024))
        member.write(b"</feedback>")
    return buffer.getvalue()


def attached(payload: bytes, subtype: str = "zip", filename: str = "report.zip") -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "reports@mailbox.example", REPORT_ADDRESS, "Report"
    message.set_content(payload, maintype="application", subtype=subtype, filename=filename)
    return message


@pytest.mark.parametrize(
    ("message", "reply"),
    [
        (attached(b"<feedback><report_metadata>", "xml", "r.xml"), "554 5.6.0 Malformed DMARC report: not well-formed"),
        (attached(b"PK\x03\x04 not really a zip"), "554 5.6.0 Malformed DMARC report: the archive cannot be read"),
        (
            attached(report_xml("x.example", "1", [record("not-an-ip", 1)]), "xml", "r.xml"),
            "554 5.6.0 Malformed DMARC report: <source_ip> 'not-an-ip' is not an IP address",
        ),
        (
            attached(b'<!DOCTYPE feedback [<!ENTITY a "aaaa">]><feedback>&a;</feedback>', "xml", "r.xml"),
            "554 5.6.0 Malformed DMARC report: not well-formed XML or not allowed",
        ),
        (attached(zip_bomb()), "552 5.3.4 DMARC report too big: its XML is over 52428800 bytes uncompressed"),
        (
            attached(gzip.compress(b"<feedback>" + b" " * (dmarc.MAX_XML_SIZE + 1)), "gzip", "r.xml.gz"),
            "552 5.3.4 DMARC report too big: its XML is over",
        ),
        (
            b"From: someone@example.test\r\nSubject: hello\r\n\r\nJust a note.\r\n",
            "550 5.6.0 Not a DMARC report: dmarc-reports@relay.test takes only DMARC aggregate reports",
        ),
    ],
    ids=["malformed-xml", "broken-zip", "bad-ip", "entities", "zip-bomb", "gzip-bomb", "not-a-report"],
)
def test_bad_reports_are_refused_and_change_nothing(app, smtp_server, message, reply):
    with app.app_context():
        before = stored()
    code, text = send(smtp_server, message)
    assert f"{code} {text}".startswith(reply)
    with app.app_context():
        assert stored() == before


def test_too_many_records_are_refused(app, smtp_server, monkeypatch):
    monkeypatch.setattr(dmarc, "MAX_RECORDS", 2)
    code, text = send(smtp_server, google_report(report_xml("google.com", "9", GOOGLE_RECORDS)))
    assert (code, text) == (552, "5.3.4 DMARC report too big: 3 records (at most 2)")
    with app.app_context():
        assert stored() == (0, 0, 0)


def test_the_report_address_takes_no_other_recipient(app, smtp_server):
    code, text = send(smtp_server, b"", rcpts=(REPORT_ADDRESS, "bounce+x@relay.test"))
    assert code == 452 and text.startswith("4.5.3 The DMARC report address is the only recipient")


def test_the_listener_still_serves_after_a_refused_report(app, smtp_server):
    assert send(smtp_server, attached(zip_bomb()))[0] == 552
    assert send(smtp_server, google_report(report_xml("google.com", "7", GOOGLE_RECORDS), "7"))[0] == 250


def test_cli_lists_shows_and_imports_reports_as_json(app, run_cli, tmp_path, test_clock):

    test_clock.value = dt.datetime(2025, 12, 5, 9, 0)
    saved = tmp_path / "google.com!shop.test.zip"
    saved.write_bytes(google_report(report_xml("google.com", "55", GOOGLE_RECORDS)).get_payload(decode=True))
    result = run_cli("dmarc", "import", str(saved), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "report_id": "55",
        "org_name": "google.com",
        "domain": "shop.test",
        "new": True,
        "records": 3,
        "messages": 128,
    }
    again = run_cli("dmarc", "import", str(saved))
    assert again.exit_code == 0 and "already stored, nothing changed" in again.output
    (listed,) = json.loads(run_cli("dmarc", "list", "--json").output)
    assert (listed["org_name"], listed["messages"], listed["failing"], listed["records"]) == ("google.com", 128, 8, 3)
    assert listed["begin"] == "2025-12-04T00:00:00Z" and listed["policy"]["p"] == "none"
    shown = json.loads(run_cli("dmarc", "show", str(listed["id"]), "--json").output)
    assert [(r["source_ip"], r["count"], r["dmarc"]) for r in shown["items"]] == [
        ("192.0.2.10", 120, "pass"),
        ("198.51.100.7", 5, "fail"),
        ("203.0.113.66", 3, "fail"),
    ]
    (day,) = json.loads(run_cli("dmarc", "sources", "--days", "7", "--json").output)
    assert (day["domain"], day["day"], day["failing"]) == ("shop.test", "2025-12-04", 8)
    assert [s["source_ip"] for s in day["sources"] if not s["aligned"]] == ["198.51.100.7", "203.0.113.66"]
    missing = run_cli("dmarc", "show", "999")
    assert missing.exit_code == 1 and "no DMARC report 999" in missing.output
    bad = tmp_path / "bad.xml"
    bad.write_bytes(b"<feedback><oops></feedback>")
    refused = run_cli("dmarc", "import", str(bad))
    assert refused.exit_code == 1 and "554 5.6.0 Malformed DMARC report" in refused.output
    with app.app_context():
        assert DmarcReport.select().count() == 1


@pytest.mark.parametrize(
    ("xml", "reason"),
    [
        (report_xml("g.example", "1", [record("192.0.2.1", 2**31)]), "<count> '2147483648' is not a number up to"),
        (report_xml("g.example", "1", []).replace(b"1764806400", b"999999999999"), "<date_range/begin> '999999"),
        (report_xml("g.example", "1", []).replace(b"<begin>1764806400", b"<begin>1764892800"), "ends before it begins"),
        (report_xml("g.example", "1", []).replace(b"<org_name>g.example</org_name>", b""), "<org_name> is missing"),
        (b"<?xml version='1.0'?><report/>", "the root element is <report>, not <feedback>"),
        (
            report_xml("g.example", "1", [record("192.0.2.1", 1)]).replace(b"<count>1<", "<count>\u00b2<".encode()),
            "<count> '\u00b2'",
        ),
        (b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><feedback/>', "not well-formed XML or not allowed"),
    ],
    ids=["count-too-big", "time-too-big", "range-backwards", "no-org", "not-feedback", "superscript", "external-dtd"],
)
def test_what_a_report_lacks_or_gets_wrong_is_named_in_the_reply(xml, reason):
    with pytest.raises(dmarc.ReportError) as refused:
        dmarc.parse_xml(xml)
    assert refused.value.reply.startswith("554 5.6.0 Malformed DMARC report: ") and reason in refused.value.reply


def test_a_report_of_the_dmarcbis_namespace_and_no_records_is_read():
    xml = report_xml("g.example", "1", [record("2001:db8::1", 4)]).replace(
        b"<feedback>", b'<feedback xmlns="urn:ietf:params:xml:ns:dmarc-2.0">'
    )
    report = dmarc.parse_xml(xml)
    assert (report.domain, report.records[0].source_ip, report.messages) == ("shop.test", "2001:db8::1", 4)
    assert dmarc.parse_xml(report_xml("g.example", "2", [])).records == []


def test_reports_for_a_domain_the_appliance_does_not_send_for_are_refused(app, smtp_server, run_cli, tmp_path):
    xml = report_xml("google.com", "3", GOOGLE_RECORDS, domain="other.example")
    code, text = send(smtp_server, google_report(xml, "3"))
    assert (code, text) == (
        550,
        "5.7.1 DMARC reports for other.example are not taken here: it is not a sending domain of this appliance",
    )
    saved = tmp_path / "other.xml"
    saved.write_bytes(xml)
    assert run_cli("dmarc", "import", str(saved)).exit_code == 1
    # A subdomain's report is its sending domain's.
    assert (
        send(smtp_server, google_report(report_xml("google.com", "4", GOOGLE_RECORDS, domain="mail.shop.test")))[0]
        == 250
    )
    with app.app_context():
        assert [r.domain for r in DmarcReport.select()] == ["mail.shop.test"]


def test_a_tree_of_many_tiny_elements_is_refused_before_it_fills_the_memory(monkeypatch):
    monkeypatch.setattr(dmarc, "MAX_RECORDS", 2)  # then at most 120 elements
    with pytest.raises(dmarc.ReportError) as refused:
        dmarc.parse_xml(b"<feedback>" + b"<a/>" * 200 + b"</feedback>")
    assert refused.value.reply == "552 5.3.4 DMARC report too big: over 120 XML elements"


def _mutated(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    buffer = bytearray(data)
    for at, value in flips:
        buffer[at % len(buffer)] = value
    return bytes(buffer)


_XML = report_xml("g.example", "1", GOOGLE_RECORDS)
_SAMPLES = [_XML, gzip.compress(_XML), google_report(_XML).get_payload(decode=True)]


@given(
    sample=st.sampled_from(_SAMPLES),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.integers(0, 10**6),
)
def test_a_damaged_report_is_read_or_refused_never_anything_else(sample, flips, cut):
    damaged = _mutated(sample, flips)[: max(1, cut % (len(sample) + 1))]
    try:
        dmarc.read_attachment(damaged)
    except dmarc.ReportError as exc:
        assert exc.reply[:3] in {"552", "554"} and "\n" not in exc.reply
