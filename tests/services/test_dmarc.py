"""DMARC aggregate reports mailed to dmarc-reports@HOSTNAME on port 25, as Google (zip) and Microsoft
(gzip) send them: read, refused or stored before the 250, then shown by the DMARC page and the CLI.

Everything runs for real: the reports go over SMTP with STARTTLS to the MX listener, the page is
read over HTTP from the app served on loopback, the PTR names come from the test DNS server.
"""

from __future__ import annotations

import gzip
import io
import re
import smtplib
import zipfile
from email.message import EmailMessage

import pytest

from appliance import dmarc
from appliance.models import DmarcRecord, DmarcReport, Message
from tests.support.relay import relay_overrides

REPORT_ADDRESS = "dmarc-reports@relay.test"
BEGIN, END = 1764806400, 1764892799  # 2025-12-04, a whole UTC day as Google reports it
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def record(ip: str, count: int, *, dkim="pass", spf="pass", header_from="shop.test", auth=None) -> str:
    dkim_auth, spf_auth = auth or (("shop.test", dkim), ("shop.test", spf))
    return f"""
  <record>
    <row>
      <source_ip>{ip}</source_ip>
      <count>{count}</count>
      <policy_evaluated><disposition>none</disposition><dkim>{dkim}</dkim><spf>{spf}</spf></policy_evaluated>
    </row>
    <identifiers><header_from>{header_from}</header_from></identifiers>
    <auth_results>
      <dkim><domain>{dkim_auth[0]}</domain><result>{dkim_auth[1]}</result><selector>s1</selector></dkim>
      <spf><domain>{spf_auth[0]}</domain><result>{spf_auth[1]}</result></spf>
    </auth_results>
  </record>"""


def report_xml(org: str, report_id: str, records: list[str], domain: str = "shop.test") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata>
    <org_name>{org}</org_name>
    <email>noreply-dmarc-support@{org}</email>
    <report_id>{report_id}</report_id>
    <date_range><begin>{BEGIN}</begin><end>{END}</end></date_range>
  </report_metadata>
  <policy_published>
    <domain>{domain}</domain><adkim>r</adkim><aspf>r</aspf><p>none</p><sp>none</sp><pct>100</pct>
  </policy_published>{"".join(records)}
</feedback>""".encode()


GOOGLE_RECORDS = [
    record("192.0.2.10", 120),  # the appliance: aligned
    record("198.51.100.7", 5, dkim="fail", spf="fail", auth=(("mailer.example", "pass"), ("mailer.example", "pass"))),
    record("203.0.113.66", 3, dkim="fail", spf="fail", auth=(("shop.test", "fail"), ("shop.test", "fail"))),
]


def google_report(xml: bytes, report_id: str = "10923567354345811234") -> EmailMessage:
    """A report as Google mails it: the message is the zip, `application/zip`, nothing else."""
    buffer = io.BytesIO()
    name = f"google.com!shop.test!{BEGIN}!{END}"
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}.xml", xml)
    message = EmailMessage()
    message["From"] = "noreply-dmarc-support@google.com"
    message["To"] = REPORT_ADDRESS
    message["Subject"] = f"Report domain: shop.test Submitter: google.com Report-ID: {report_id}"
    message.set_content(buffer.getvalue(), maintype="application", subtype="zip", filename=f"{name}.zip")
    return message


def microsoft_report(xml: bytes) -> EmailMessage:
    """A report as Microsoft mails it: a text part, then the `.xml.gz` attachment."""
    message = EmailMessage()
    message["From"] = "DMARC Aggregate Report <dmarcreport@microsoft.com>"
    message["To"] = REPORT_ADDRESS
    message["Subject"] = "Report Domain: shop.test Submitter: protection.outlook.com Report-ID: 7d3c0e2a"
    message.set_content("This is a DMARC aggregate report from Microsoft Corporation.\n")
    message.add_attachment(
        gzip.compress(xml),
        maintype="application",
        subtype="gzip",
        filename=f"protection.outlook.com!shop.test!{BEGIN}!{END}.xml.gz",
    )
    return message


def send(smtp_server, message: EmailMessage | bytes, rcpts=(REPORT_ADDRESS,)):
    """Mail ``message`` to the MX listener as a reporter's MTA does; return the (code, text) of the
    first refusal, or of the DATA reply."""
    with smtplib.SMTP("relay.test", smtp_server.mx_port, local_hostname="mail.google.test", timeout=20) as client:
        client.starttls(context=smtp_server.client_context())
        client.ehlo()
        client.mail("noreply-dmarc-support@google.com")
        for rcpt in rcpts:
            code, text = client.rcpt(rcpt)
            if code != 250:
                return code, text.decode()
        code, text = client.data(message if isinstance(message, bytes) else message.as_bytes())
        return code, text.decode()


def stored() -> tuple[int, int, int]:
    return DmarcReport.select().count(), DmarcRecord.select().count(), Message.select().count()


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port)


@pytest.fixture
def ptr(dns_server):
    dns_server.ptr("192.0.2.10", "relay.shop.test")
    dns_server.ptr("198.51.100.7", "o1.mailer.example")


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
