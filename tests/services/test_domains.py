"""Sending domains against a DNS server on loopback: the records to publish, checks in plain words,
verification, alerts when a record breaks, key rotation, and the `appliance domains` commands."""

from __future__ import annotations

import json

import pytest

from appliance import dkim, domains
from appliance.models import Alert, Domain
from tests.support.process import cli_json


@pytest.fixture
def overrides(overrides, dns_server):
    return {**overrides, "DNS_SERVERS": dns_server.spec, "DNS_TIMEOUT": 1}


def publish(dns_server, domain: Domain, *, skip: tuple[str, ...] = (), hostname: str = "relay.test") -> None:
    """Publish the domain's records in the test DNS server exactly as the appliance shows them."""
    for record in domains.records(domain, hostname):
        if record.key in skip:
            continue
        value = dkim.zone_value(record.value) if record.type == "TXT" else record.value
        dns_server.add(record.name, record.type, value)


@pytest.fixture
def example(app):
    with app.app_context():
        return domains.add("Example.TEST.")


def check(app, domain: Domain) -> dict[str, domains.Result]:
    results = domains.check(Domain.get_by_id(domain.id), app.config)
    return results


def test_adding_a_domain_generates_keys_and_the_records_to_publish(example):
    assert example.name == "example.test"
    records = {r.key: r for r in domains.records(example, "relay.test")}
    assert list(records) == ["dkim", "dkim-ed25519", "spf", "dmarc", "dmarc-report", "bounce-mx", "bounce-spf"]
    assert records["dkim"].name == f"{example.selector}-rsa._domainkey.example.test"
    assert all(len(s.encode()) <= 255 for s in records["dkim"].strings) and len(records["dkim"].strings) > 1
    assert records["spf"].value == "v=spf1 a:relay.test ~all"
    assert records["dmarc"].name == "_dmarc.example.test" and "p=quarantine" in records["dmarc"].value
    assert records["dmarc"].value.endswith("; rua=mailto:dmarc-reports@relay.test")
    # The reports go to another domain than example.test's: RFC 7489 §7.1's authorization, in relay.test's zone.
    assert (records["dmarc-report"].name, records["dmarc-report"].value) == (
        "example.test._report._dmarc.relay.test",
        "v=DMARC1",
    )
    assert (records["bounce-mx"].name, records["bounce-mx"].value) == ("bounces.example.test", "10 relay.test.")
    assert not example.verified


def test_published_records_all_pass_and_the_domain_becomes_verified(app, example, dns_server):
    publish(dns_server, example)
    results = check(app, example)
    assert {k: r.status for k, r in results.items()} == dict.fromkeys(results, "pass")
    domain = Domain.get_by_id(example.id)
    assert domain.verified and domain.last_checked_at is not None
    assert domain.statuses()["spf"] == {"status": "pass", "error": ""}


BROKEN = {
    "missing DKIM": ("dkim", lambda dns, d: None, "missing: there is no TXT record at"),
    "wrong key": (
        "dkim",
        lambda dns, d: dns.add(
            f"{d.selector}-rsa._domainkey.example.test",
            "TXT",
            dkim.zone_value(dkim.rsa_record(dkim.generate("x").rsa_pem)),
        ),
        "wrong key",
    ),
    "several SPF records": (
        "spf",
        lambda dns, d: dns.add("example.test", "TXT", '"v=spf1 a:relay.test ~all"', '"v=spf1 mx -all"'),
        "several SPF records (2)",
    ),
    "SPF over 10 lookups": (
        "spf",
        lambda dns, d: dns.add(
            "example.test", "TXT", '"v=spf1 a:relay.test ' + " ".join(f"a:h{i}.test" for i in range(11)) + ' ~all"'
        ),
        "SPF with more than 10 lookups: 12 DNS lookups",
    ),
    "SPF without the appliance": (
        "spf",
        lambda dns, d: dns.add("example.test", "TXT", '"v=spf1 ip4:192.0.2.1 -all"'),
        "does not authorize this appliance (relay.test): publish v=spf1 ip4:192.0.2.1 a:relay.test -all",
    ),
    "DMARC policy none": (
        "dmarc",
        lambda dns, d: dns.add("_dmarc.example.test", "TXT", '"v=DMARC1; p=none"'),
        "DMARC policy none",
    ),
    "no DMARC report authorization": (
        "dmarc-report",
        lambda dns, d: None,
        "missing: there is no v=DMARC1 record at example.test._report._dmarc.relay.test, so receivers drop the reports",
    ),
    "bounce MX elsewhere": (
        "bounce-mx",
        lambda dns, d: dns.add("bounces.example.test", "MX", "10 mx.other.test."),
        "points at mx.other.test instead of relay.test",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_record_fails_with_a_reason_in_plain_words_and_the_others_pass(app, example, dns_server, case):
    key, publish_broken, words = BROKEN[case]
    publish(dns_server, example, skip=(key,))
    publish_broken(dns_server, example)
    results = check(app, example)
    assert results[key].status == "fail" and words in results[key].error
    assert [k for k, r in results.items() if r.status != "pass"] == [key]
    assert Domain.get_by_id(example.id).verified == (key != "dkim")


def test_a_record_that_breaks_raises_an_alert_once_and_unverifies_the_domain(app, example, dns_server):
    publish(dns_server, example)
    check(app, example)
    dns_server.records.pop((f"{example.selector}-rsa._domainkey.example.test.", "TXT"))
    check(app, example)
    check(app, example)  # still broken: not a new break
    broken = Alert.get(Alert.kind == "dns-record-broken")
    assert broken.subject == "domain example.test" and broken.count == 1
    assert "DKIM (RSA-2048)" in broken.text and "missing" in broken.text
    unverified = Alert.get(Alert.kind == "domain-unverified")
    assert unverified.severity == "critical"
    assert not Domain.get_by_id(example.id).verified


def test_a_dns_timeout_is_reported_as_could_not_check_and_keeps_the_verification(app, example, dns_server):
    publish(dns_server, example)
    check(app, example)
    dns_server.time_out(f"{example.selector}-rsa._domainkey.example.test")
    results = check(app, example)
    assert results["dkim"].status == "error" and results["dkim"].error.startswith("could not check")
    assert Domain.get_by_id(example.id).verified
    assert not Alert.select().exists()


def test_the_report_authorization_is_asked_for_only_when_the_reports_go_to_another_domain(example):
    assert "dmarc-report" in {r.key for r in domains.records(example, "relay.test")}
    assert "dmarc-report" not in {r.key for r in domains.records(example, "relay.example.test")}
    (suggested,) = [r for r in domains.records(example, "relay.example.test") if r.key == "dmarc"]
    assert "rua=mailto:dmarc-reports@relay.example.test" in suggested.value


def test_rotation_switches_to_the_new_selector_once_its_record_is_published(app, example, dns_server):
    publish(dns_server, example)
    check(app, example)
    old_selector = example.selector
    rotated = domains.rotate(Domain.get_by_id(example.id))
    assert rotated.next_selector and rotated.next_selector != old_selector
    keys = [r.key for r in domains.records(rotated, "relay.test")]
    assert keys[:4] == ["dkim", "dkim-ed25519", "dkim-next", "dkim-ed25519-next"]

    check(app, example)  # the new record is not there yet: keep signing with the old key
    assert Domain.get_by_id(example.id).selector == old_selector

    publish(
        dns_server,
        Domain.get_by_id(example.id),
        skip=("dkim", "dkim-ed25519", "spf", "dmarc", "dmarc-report", "bounce-mx", "bounce-spf"),
    )
    results = check(app, example)
    domain = Domain.get_by_id(example.id)
    assert (domain.selector, domain.next_selector, domain.verified) == (rotated.next_selector, None, True)
    assert results["dkim"].status == "pass" and "dkim-next" not in results


def test_the_domains_commands_add_show_and_check_with_json(run_cli, dns_server):
    added = cli_json(run_cli("domains", "add", "mail.example.test", "--json"))
    assert added["name"] == "mail.example.test" and added["verified"] is False
    assert {r["status"] for r in added["records"]} == {"unchecked"}
    dkim_record = added["records"][0]
    assert "".join(dkim_record["strings"]) == dkim_record["value"]

    unpublished = run_cli("domains", "check", "mail.example.test")
    assert unpublished.exit_code == 1 and "mail.example.test" in unpublished.output

    for record in added["records"]:
        value = " ".join(f'"{s}"' for s in record["strings"]) if record["type"] == "TXT" else record["value"]
        dns_server.add(record["name"], record["type"], value)
    (checked,) = cli_json(run_cli("domains", "check", "mail.example.test", "--json"))
    assert checked["verified"] is True
    assert {r["status"] for r in checked["records"]} == {"pass"}

    shown = run_cli("domains", "show", "mail.example.test")
    assert shown.exit_code == 0 and "mail.example.test: verified" in shown.output
    listed = cli_json(run_cli("domains", "list", "--json"))
    assert [d["name"] for d in listed] == ["mail.example.test"]
    rotated = cli_json(run_cli("domains", "rotate", "mail.example.test", "--json"))
    assert rotated["next_selector"] and json.dumps(rotated).count("new key") == 2


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("domains", "show", "nowhere.test"), "no sending domain 'nowhere.test'"),
        (("domains", "add", "not a domain"), "is not a domain name"),
    ],
)
def test_domain_command_errors_go_to_stderr_with_a_non_zero_exit(run_cli, args, words):
    result = run_cli(*args)
    assert result.exit_code != 0 and words in result.stderr
