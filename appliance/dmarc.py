"""DMARC aggregate reports: the appliance's report address, reading a report safely, storing it once,
and the figures the DMARC page and `appliance dmarc` show (docs/dmarc.md).

A domain whose DMARC record says ``rua=mailto:dmarc-reports@HOSTNAME`` gets, once a day from each
mailbox provider, an RFC 7489 Appendix C XML report of who sent mail with its domain in From:, as an
attachment: zipped (Google), gzipped (Microsoft) or plain. The report arrives on port 25 and
is read before the 250: a message that is not a report, a malformed one and one over the limits
below are refused with a 5xx reply and leave nothing behind; a good one is stored, with the mail it
came in, in one transaction. A report id a reporter sends again is stored once (the mail is still
accepted, so the reporter stops retrying). Only reports for the appliance's sending domains (and
their subdomains) are taken: the address takes mail from anyone.

The XML is parsed by defusedxml, which refuses DTDs, entity declarations and external references:
a report is data from anyone on the Internet, and a billion-laughs or an external entity must not
get past the parser. The archives are read with bounded reads, so a zip or gzip bomb stops at
MAX_XML_SIZE whatever its headers claim.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import email
import email.policy
import gzip
import io
import ipaddress
import json
import logging
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass, field, fields
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree

from . import audit, clock, db, dns, intake, replies
from .models import DmarcRecord, DmarcReport, Domain

log = logging.getLogger(__name__)

LOCAL_PART = "dmarc-reports"  # the report address: dmarc-reports@HOSTNAME, read on port 25
MAX_ATTACHMENT_SIZE = 10 * 1024 * 1024  # a report's attachment as mailed (compressed), in bytes
MAX_XML_SIZE = 50 * 1024 * 1024  # its XML once uncompressed: room for MAX_RECORDS records of 2 KB each
MAX_RECORDS = 20_000  # rows of one report
_ELEMENTS_PER_RECORD = 40  # a record has some 20 elements; the report's head adds a few dozen
_ZIP_MEMBERS = 16  # a report's zip holds one XML file; more than this many is not a report

_ZIP_TYPES = ("application/zip", "application/x-zip-compressed", "application/x-zip")
_GZIP_TYPES = ("application/gzip", "application/x-gzip", "application/gzip-compressed")
_XML_TYPES = ("application/xml", "text/xml")
_ATTACHMENT_TYPES = (*_ZIP_TYPES, *_GZIP_TYPES, *_XML_TYPES, "application/octet-stream")
_EXTENSIONS = (".zip", ".gz", ".xml")
_RESULTS = ("pass", "fail")


class ReportError(Exception):
    """A message refused at the report address; ``reply`` is the SMTP answer (a 5xx)."""

    def __init__(self, reply: str):
        reply = " ".join(reply.split())  # a reason quoting a parser's message stays one line
        super().__init__(reply)
        self.reply = reply


def address(hostname: str) -> str:
    """The report address, the ``rua=mailto:`` of the DMARC record the domain page suggests."""
    return f"{LOCAL_PART}@{hostname}"


def is_address(settings: dict, value: str) -> bool:
    local, _, domain = value.rpartition("@")
    return local.lower() == LOCAL_PART and domain.lower().rstrip(".") == settings["HOSTNAME"].lower()


# -- reading a report -----------------------------------------------------------------------------
@dataclass
class Record:
    source_ip: str
    count: int
    disposition: str
    dkim: str
    spf: str
    header_from: str
    envelope_from: str
    dkim_results: list[dict] = field(default_factory=list)
    spf_results: list[dict] = field(default_factory=list)


@dataclass
class Report:
    org_name: str
    email: str
    report_id: str
    domain: str
    begin: dt.datetime
    end: dt.datetime
    adkim: str
    aspf: str
    policy: str
    subdomain_policy: str
    pct: int | None
    records: list[Record]

    @property
    def messages(self) -> int:
        return sum(r.count for r in self.records)


def read_message(data: bytes, to: str) -> Report:
    """The report a message to the report address ``to`` carries (in an attachment, or as its
    body), for one of the appliance's domains (a database read). Raises ReportError with the reply
    to give."""
    try:
        message = email.message_from_bytes(data, policy=email.policy.compat32)
        found = None
        for part in message.walk():
            if part.is_multipart():
                continue
            kind = part.get_content_type()
            name = (part.get_filename() or "").lower()
            if kind in _ATTACHMENT_TYPES and (kind != "application/octet-stream" or name.endswith(_EXTENSIONS)):
                found = part.get_payload(decode=True) or b""
                break
    except Exception as exc:  # noqa: BLE001 — the email package on anyone's bytes: refused, not a crash
        raise ReportError(replies.DMARC_MALFORMED.format(reason=f"the message cannot be read ({exc})")) from None
    if found is None:
        reason = "no attachment of type application/zip, application/gzip or text/xml"
        raise ReportError(replies.DMARC_NOT_A_REPORT.format(address=to, reason=reason))
    return check_domain(read_attachment(found))


def read_attachment(data: bytes) -> Report:
    """A report from the bytes of its attachment (zip, gzip or XML, told apart by their first bytes)."""
    if len(data) > MAX_ATTACHMENT_SIZE:
        raise ReportError(replies.DMARC_TOO_BIG.format(reason=f"the attachment is over {MAX_ATTACHMENT_SIZE} bytes"))
    return parse_xml(_uncompressed(data))


def _bounded(stream) -> bytes:
    xml = stream.read(MAX_XML_SIZE + 1)
    if len(xml) > MAX_XML_SIZE:
        raise ReportError(replies.DMARC_TOO_BIG.format(reason=f"its XML is over {MAX_XML_SIZE} bytes uncompressed"))
    return xml


def _uncompressed(data: bytes) -> bytes:
    try:
        if data.startswith(b"PK\x03\x04"):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                members = archive.infolist()
                if len(members) > _ZIP_MEMBERS:
                    raise ReportError(replies.DMARC_MALFORMED.format(reason=f"the zip holds {len(members)} files"))
                files = [m for m in members if not m.is_dir()]
                xml = [m for m in files if m.filename.lower().endswith(".xml")] if len(files) > 1 else files
                if len(xml) != 1:
                    raise ReportError(replies.DMARC_MALFORMED.format(reason="the zip holds no single .xml file"))
                with archive.open(xml[0]) as stream:
                    return _bounded(stream)
        if data.startswith(b"\x1f\x8b"):
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
                return _bounded(stream)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        # RuntimeError: an encrypted member; NotImplementedError: a compression zipfile does not know
        raise ReportError(replies.DMARC_MALFORMED.format(reason=f"the archive cannot be read ({exc})")) from None
    return data


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]  # DMARCbis reports put the elements in a namespace; RFC 7489's do not


def _child(parent: Element | None, name: str) -> Element | None:
    if parent is None:
        return None
    return next((c for c in parent if _local(c.tag) == name), None)


def _children(parent: Element | None, name: str) -> list[Element]:
    return [] if parent is None else [c for c in parent if _local(c.tag) == name]


def _text(parent: Element | None, *path: str, limit: int = 255) -> str:
    node = parent
    for name in path:
        node = _child(node, name)
    return (node.text or "").strip()[:limit] if node is not None else ""


def _required(parent: Element | None, *path: str) -> str:
    value = _text(parent, *path)
    if not value:
        raise ReportError(replies.DMARC_MALFORMED.format(reason=f"<{'/'.join(path)}> is missing"))
    return value


def _number(value: str, what: str, most: int = 2**31 - 1) -> int:
    """A count or a time as a report gives it: digits, at most ``most`` (a column's integer)."""
    if not (value.isascii() and value.isdigit()) or len(value) > 12 or int(value) > most:
        raise ReportError(replies.DMARC_MALFORMED.format(reason=f"{what} {value[:40]!r} is not a number up to {most}"))
    return int(value)


def _moment(value: str, what: str) -> dt.datetime:
    seconds = _number(value, what, most=253402300799)  # Unix time, up to the last second of 9999
    return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)


def _verdict(value: str) -> str:
    value = value.lower()
    return value if value in _RESULTS else ("fail" if value else "")


def parse_xml(xml: bytes) -> Report:
    """Parse RFC 7489 Appendix C XML. Raises ReportError (DTDs and entities are refused)."""
    most = _ELEMENTS_PER_RECORD * (MAX_RECORDS + 1)  # a tree of tiny elements costs far more memory than its XML
    root = None
    try:
        for count, (_event, element) in enumerate(
            defusedxml.ElementTree.iterparse(io.BytesIO(xml), events=("start",), forbid_dtd=True)
        ):
            root = element if root is None else root
            if count > most:
                raise ReportError(replies.DMARC_TOO_BIG.format(reason=f"over {most} XML elements"))
    except (ParseError, defusedxml.DefusedXmlException, ValueError, LookupError) as exc:  # LookupError: encoding=
        raise ReportError(
            replies.DMARC_MALFORMED.format(reason=f"not well-formed XML or not allowed ({exc})")
        ) from None
    if _local(root.tag) != "feedback":
        raise ReportError(
            replies.DMARC_MALFORMED.format(reason=f"the root element is <{_local(root.tag)[:40]}>, not <feedback>")
        )
    meta, published = _child(root, "report_metadata"), _child(root, "policy_published")
    rows = _children(root, "record")
    if len(rows) > MAX_RECORDS:
        raise ReportError(replies.DMARC_TOO_BIG.format(reason=f"{len(rows)} records (at most {MAX_RECORDS})"))
    begin = _moment(_required(meta, "date_range", "begin"), "<date_range/begin>")
    end = _moment(_required(meta, "date_range", "end"), "<date_range/end>")
    if end < begin:
        raise ReportError(replies.DMARC_MALFORMED.format(reason="the date range ends before it begins"))
    pct = _text(published, "pct")
    return Report(
        org_name=_required(meta, "org_name"),
        email=_text(meta, "email"),
        report_id=_required(meta, "report_id"),
        domain=_required(published, "domain").lower().rstrip("."),
        begin=begin,
        end=end,
        adkim=_text(published, "adkim")[:1].lower() or "r",
        aspf=_text(published, "aspf")[:1].lower() or "r",
        policy=_text(published, "p", limit=16).lower(),
        subdomain_policy=_text(published, "sp", limit=16).lower(),
        pct=_number(pct, "<pct>") if pct else None,
        records=[_record(row) for row in rows],
    )


def _record(row: Element) -> Record:
    source = _required(row, "row", "source_ip")
    try:
        source = str(ipaddress.ip_address(source))
    except ValueError:
        raise ReportError(
            replies.DMARC_MALFORMED.format(reason=f"<source_ip> {source[:60]!r} is not an IP address")
        ) from None
    evaluated = _child(_child(row, "row"), "policy_evaluated")
    results = _child(row, "auth_results")
    return Record(
        source_ip=source,
        count=_number(_required(row, "row", "count"), "<count>"),
        disposition=_text(evaluated, "disposition", limit=16).lower() or "none",
        dkim=_verdict(_text(evaluated, "dkim")),
        spf=_verdict(_text(evaluated, "spf")),
        header_from=_text(row, "identifiers", "header_from").lower(),
        envelope_from=_text(row, "identifiers", "envelope_from").lower(),
        dkim_results=[
            {"domain": _text(r, "domain").lower(), "selector": _text(r, "selector"), "result": _text(r, "result")}
            for r in _children(results, "dkim")
        ],
        spf_results=[
            {"domain": _text(r, "domain").lower(), "scope": _text(r, "scope"), "result": _text(r, "result")}
            for r in _children(results, "spf")
        ],
    )


# -- storing ------------------------------------------------------------------------------------------
def check_domain(report: Report) -> Report:
    """The report, when its domain is a sending domain of the appliance or under one; else
    ReportError. The report address takes mail from anyone: nobody else's figures fill its tables."""
    labels = report.domain.split(".")
    names = [".".join(labels[i:]) for i in range(len(labels) - 1)]
    if not names or not Domain.select().where(Domain.name.in_(names)).exists():
        raise ReportError(replies.DMARC_UNKNOWN_DOMAIN.format(domain=report.domain[:100]))
    return report


def store(report: Report, message_id: str = "") -> DmarcReport | None:
    """Store a report and its records (inside the caller's write transaction); None when the
    reporter's report id is already stored."""
    if (
        DmarcReport.select()
        .where((DmarcReport.org_name == report.org_name) & (DmarcReport.report_id == report.report_id))
        .exists()
    ):
        log.info("DMARC report %s from %s: already stored", report.report_id, report.org_name)
        return None
    columns = {f.name: getattr(report, f.name) for f in fields(Report) if f.name != "records"}
    row = DmarcReport.create(**columns, message_id=message_id)
    db.insert_rows(
        DmarcRecord,
        [
            {
                **vars(r),
                "report": row.id,
                "dkim_results": json.dumps(r.dkim_results),
                "spf_results": json.dumps(r.spf_results),
            }
            for r in report.records
        ],
    )
    log.info(
        "DMARC report %s from %s for %s: %d records",
        report.report_id,
        report.org_name,
        report.domain,
        len(report.records),
    )
    return row


def storing(report: Report):
    """A store function (GroupCommitter.accept) for the mail that carried ``report``: the mail as
    any inbound mail, then the report, in the same transaction."""

    def store_with_report(items: list[intake.Incoming]) -> list[str]:
        ids = intake.store_many(items)
        store(report, ids[0])
        return ids

    return store_with_report


def import_file(data: bytes) -> tuple[Report, bool]:
    """Store a report saved elsewhere (its zip, gzip or XML, or the whole mail); return it and
    whether it was new. Raises ReportError."""
    bare = data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith((b"PK\x03\x04", b"\x1f\x8b", b"<"))
    report = check_domain(read_attachment(data)) if bare else read_message(data, "the report address")
    with db.atomic_write():
        stored = store(report)
        if stored is not None:
            audit.record(
                "dmarc.import", f"DMARC report {report.report_id}", f"from {report.org_name} for {report.domain}"
            )
    return report, stored is not None


# -- what the reports say -------------------------------------------------------------------------
PTR_TTL = 3600.0  # seconds a source's PTR names are reused
PTR_LOOKUPS = 64  # sources looked up for one page at most (the others show without a name)
PTR_WAIT = 3.0  # seconds a page waits for them at most (DNS_TIMEOUT, when shorter)
_PTR_CACHE_SIZE = 4096
_ptr_cache: dict[tuple[str, str], tuple[float, list[str]]] = {}  # (DNS_SERVERS, ip): (until, names)
_ptr_lock = threading.Lock()


def _cached(settings: dict, ips) -> dict[str, list[str]]:
    now = time.monotonic()
    with _ptr_lock:
        entries = {ip: _ptr_cache.get((settings["DNS_SERVERS"], ip)) for ip in ips}
    return {ip: entry[1] for ip, entry in entries.items() if entry and entry[0] > now}


def ptr_names(settings: dict, ips: list[str]) -> dict[str, list[str]]:
    """The PTR names of each source IP: cached for PTR_TTL, looked up at most PTR_LOOKUPS at a time,
    eight in parallel, waited for at most PTR_WAIT (a name found later is cached for the next view;
    one not found in time shows as [])."""
    found = _cached(settings, ips)
    missing = [ip for ip in dict.fromkeys(ips) if ip not in found][:PTR_LOOKUPS]
    if missing:
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(missing)), thread_name_prefix="ptr")
        futures = [pool.submit(_reverse, settings, ip) for ip in missing]
        concurrent.futures.wait(futures, timeout=min(PTR_WAIT, float(settings["DNS_TIMEOUT"])))
        pool.shutdown(wait=False, cancel_futures=True)
        found.update(_cached(settings, missing))
    return {ip: found.get(ip, []) for ip in ips}


def _reverse(settings: dict, ip: str) -> None:
    """Look up the PTR names of ``ip`` and cache them ([] for none); a lookup DNS did not answer is
    not cached."""
    try:
        names = dns.reverse_names(settings, ip)
    except dns.NoSuchDomain:
        names = []
    except dns.DnsError:
        return
    with _ptr_lock:
        if len(_ptr_cache) >= _PTR_CACHE_SIZE:
            _ptr_cache.clear()
        _ptr_cache[settings["DNS_SERVERS"], ip] = (time.monotonic() + PTR_TTL, names)


def _passed(results: list[dict]) -> list[str]:
    return sorted({r["domain"] for r in results if r.get("result", "").lower() == "pass" and r.get("domain")})


def verdict(source: dict) -> str:
    """What a source that fails DMARC most likely is, in a sentence (docs/dmarc.md)."""
    if source["dmarc_pass"] == source["messages"]:
        return ""
    others = sorted(set(source["spf_domains"]) | set(source["dkim_domains"]))
    if others:
        return (
            f"passes SPF or DKIM as {', '.join(others)} but not aligned with the From: domain: most likely a "
            "service that sends for you (or a forwarder); give it a DKIM key on your domain or your domain as "
            "its return path"
        )
    return (
        "no SPF or DKIM passes: someone spoofing the domain, or a sender you forgot entirely (its PTR tells which); "
        "a p=quarantine or p=reject policy stops the spoofed mail"
    )


def days(settings: dict, domain: str = "", last: int = 30) -> list[dict]:
    """Per domain and day (a report's begin, UTC) over the ``last`` days up to today, newest first:
    who sent as the domain (each source IP with its PTR names and counts, failing sources first)
    and the totals."""
    query = (
        DmarcRecord.select(DmarcRecord, DmarcReport)
        .join(DmarcReport)
        .order_by(DmarcReport.begin.desc(), DmarcRecord.id)
    )
    if domain:
        query = query.where(DmarcReport.domain == domain.lower())
    since = dt.datetime.combine(clock.now().date() - dt.timedelta(days=last - 1), dt.time())
    query = query.where(DmarcReport.begin >= since)
    groups: dict[tuple[str, dt.date], dict[str, dict]] = {}
    for record in query:
        report = record.report
        sources = groups.setdefault((report.domain, report.begin.date()), {})
        source = sources.setdefault(
            record.source_ip,
            {
                "source_ip": record.source_ip,
                "messages": 0,
                "spf_pass": 0,
                "dkim_pass": 0,
                "dmarc_pass": 0,
                "dispositions": {},
                "reporters": set(),
                "header_from": set(),
                "spf_domains": set(),
                "dkim_domains": set(),
            },
        )
        source["messages"] += record.count
        source["spf_pass"] += record.count if record.spf == "pass" else 0
        source["dkim_pass"] += record.count if record.dkim == "pass" else 0
        source["dmarc_pass"] += record.count if "pass" in (record.spf, record.dkim) else 0
        source["dispositions"][record.disposition] = source["dispositions"].get(record.disposition, 0) + record.count
        source["reporters"].add(report.org_name)
        source["header_from"].add(record.header_from)
        source["spf_domains"].update(_passed(json.loads(record.spf_results)))
        source["dkim_domains"].update(_passed(json.loads(record.dkim_results)))
    ips = sorted({ip for sources in groups.values() for ip in sources})
    names = ptr_names(settings, ips) if ips else {}
    shown = []
    for (name, day), sources in groups.items():
        rows = []
        for source in sources.values():
            for key in ("reporters", "header_from", "spf_domains", "dkim_domains"):
                source[key] = sorted(source[key] - {""})
            source["ptr"] = names.get(source["source_ip"], [])
            source["aligned"] = source["dmarc_pass"] == source["messages"]
            source["verdict"] = verdict(source)
            rows.append(source)
        rows.sort(key=lambda s: (s["aligned"], -s["messages"], s["source_ip"]))
        shown.append(
            {
                "domain": name,
                "day": day.isoformat(),
                "messages": sum(s["messages"] for s in rows),
                "failing": sum(s["messages"] - s["dmarc_pass"] for s in rows),
                "sources": rows,
            }
        )
    return shown


def reported_domains() -> list[str]:
    """The domains that reports were received for, by name."""
    query = DmarcReport.select(DmarcReport.domain).distinct().order_by(DmarcReport.domain)
    return [r.domain for r in query]


def _report_summary(report: DmarcReport, messages: int, failing: int, records: int) -> dict:
    return {
        "id": report.id,
        "org_name": report.org_name,
        "email": report.email,
        "report_id": report.report_id,
        "domain": report.domain,
        "begin": report.begin.isoformat() + "Z",
        "end": report.end.isoformat() + "Z",
        "policy": {
            "p": report.policy,
            "sp": report.subdomain_policy,
            "adkim": report.adkim,
            "aspf": report.aspf,
            "pct": report.pct,
        },
        "records": records,
        "messages": messages,
        "failing": failing,
        "message_id": report.message_id,
        "received_at": report.received_at.isoformat() + "Z",
    }


def listing(domain: str = "", limit: int = 200) -> list[dict]:
    """The stored reports, newest first, each with its counts."""
    query = DmarcReport.select().order_by(DmarcReport.begin.desc(), DmarcReport.id.desc()).limit(limit)
    if domain:
        query = query.where(DmarcReport.domain == domain.lower())
    reports = list(query)
    totals: dict[int, list[int]] = {r.id: [0, 0, 0] for r in reports}
    if reports:
        for record in DmarcRecord.select().where(DmarcRecord.report.in_(list(totals))):
            figures = totals[record.report_id]
            figures[0] += record.count
            figures[1] += 0 if "pass" in (record.spf, record.dkim) else record.count
            figures[2] += 1
    return [_report_summary(r, *totals[r.id]) for r in reports]


def detail(report_id: int) -> dict | None:
    """One stored report with its records, or None."""
    report = DmarcReport.get_or_none(DmarcReport.id == report_id)
    if report is None:
        return None
    records = [
        {
            "source_ip": r.source_ip,
            "count": r.count,
            "disposition": r.disposition,
            "dkim": r.dkim,
            "spf": r.spf,
            "dmarc": "pass" if "pass" in (r.spf, r.dkim) else "fail",
            "header_from": r.header_from,
            "envelope_from": r.envelope_from,
            "dkim_results": json.loads(r.dkim_results),
            "spf_results": json.loads(r.spf_results),
        }
        for r in DmarcRecord.select().where(DmarcRecord.report == report.id).order_by(DmarcRecord.id)
    ]
    messages = sum(r["count"] for r in records)
    failing = sum(r["count"] for r in records if r["dmarc"] == "fail")
    return {**_report_summary(report, messages, failing, len(records)), "items": records}
