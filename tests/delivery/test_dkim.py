"""DKIM keys, records and signatures (RFC 6376, RFC 8463), verified by dkimpy without any network."""

from __future__ import annotations

import email

import dkim as dkimpy
import pytest

from appliance import dkim
from tests.support.dkim import lookup

MESSAGE = b"From: Shop <orders@shop.test>\r\nTo: bob@example.com\r\nSubject: Order 7\r\n\r\nThank you.\r\n"


@pytest.fixture(scope="module")
def keys():
    return dkim.generate("ap2026test")


def test_an_rsa_record_is_split_into_strings_of_at_most_255_bytes_that_join_back(keys):
    value = dkim.rsa_record(keys.rsa_pem)
    strings = dkim.txt_strings(value)
    assert len(value) > 255 and len(strings) == 2
    assert all(len(s.encode()) <= 255 for s in strings)
    assert "".join(strings) == value
    assert dkim.zone_value(value) == " ".join(f'"{s}"' for s in strings)


def test_the_ed25519_record_publishes_the_raw_32_byte_public_key(keys):
    import base64

    record = dkim.tags(dkim.ed25519_record(keys.ed25519_seed))
    assert record["k"] == "ed25519"
    assert len(base64.b64decode(record["p"])) == 32


def test_both_signatures_verify_and_name_the_domain_and_selectors(keys):
    signed = dkim.sign(MESSAGE, "shop.test", keys.selector, keys.rsa_pem, keys.ed25519_seed) + MESSAGE
    verifier = dkimpy.DKIM(signed)
    assert verifier.verify(idx=0, dnsfunc=lookup(keys))
    assert verifier.verify(idx=1, dnsfunc=lookup(keys))
    fields = [dkim.tags(f) for f in email.message_from_bytes(signed).get_all("DKIM-Signature")]
    assert [(f["a"], f["d"], f["s"]) for f in fields] == [
        ("rsa-sha256", "shop.test", f"{keys.selector}-rsa"),
        ("ed25519-sha256", "shop.test", f"{keys.selector}-ed25519"),
    ]


def test_a_changed_body_breaks_the_signature(keys):
    signed = dkim.sign(MESSAGE, "shop.test", keys.selector, keys.rsa_pem, None) + MESSAGE
    tampered = signed.replace(b"Thank you.", b"Pay here.")
    assert not dkimpy.verify(tampered, dnsfunc=lookup(keys))
