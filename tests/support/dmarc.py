"""DMARC aggregate reports made the way the mailbox providers make them (Google's zip, Microsoft's
gzip), and mailing them to the appliance's report address on port 25 as their MTAs do."""

from __future__ import annotations

import gzip
import io
import smtplib
import zipfile
from email.message import EmailMessage

from appliance.models import DmarcRecord, DmarcReport, Message

REPORT_ADDRESS = "dmarc-reports@relay.test"
BEGIN, END = 1764806400, 1764892799  # 2025-12-04, a whole UTC day as Google reports it


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
