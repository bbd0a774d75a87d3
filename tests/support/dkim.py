"""DKIM in the tests: keys in the test DNS, a signed route to a sink, and checking signatures with dkimpy."""

from __future__ import annotations

import dkim as dkimpy

from appliance import dkim, dns, domains
from appliance.models import Domain


def lookup(keys):
    records = {
        f"{dkim.rsa_selector(keys.selector)}._domainkey.shop.test.": dkim.rsa_record(keys.rsa_pem),
        f"{dkim.ed25519_selector(keys.selector)}._domainkey.shop.test.": dkim.ed25519_record(keys.ed25519_seed),
    }
    return lambda name, timeout=5: records.get(name.decode(), "").encode() or None


def signed_route(app, shop_domain, dns_server, sink_mx):
    """Publish shop.test's DKIM records in the test DNS (both keys check as passing) and route
    example.test to a sink MX on 127.0.0.3, which is returned."""
    for record in domains.records(shop_domain, "relay.test"):
        value = dkim.zone_value(record.value) if record.type == "TXT" else record.value
        dns_server.add(record.name, record.type, value)
    results = domains.check(Domain.get_by_id(shop_domain.id), app.config)
    assert results["dkim"].status == results["dkim-ed25519"].status == "pass"
    dns_server.mx("example.test", (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")
    return sink_mx("127.0.0.3")


def assert_both_signatures_verify(app, data: bytes) -> None:
    """dkimpy verifies the RSA and the Ed25519 signature of ``data`` with keys read from the test DNS."""

    def through_test_dns(name: bytes, timeout: int = 5) -> bytes | None:
        found = dns.txt_records(app.config, name.decode().rstrip("."))
        return found[0].encode() if found else None

    verifier = dkimpy.DKIM(data)
    assert verifier.verify(idx=0, dnsfunc=through_test_dns)
    assert verifier.verify(idx=1, dnsfunc=through_test_dns)
