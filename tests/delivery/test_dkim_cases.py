"""DKIM signed with OpenSSL (appliance/dkim.py) gives dkimpy's signatures byte for byte, and every
case verifies with dkimpy: at the signing function, and at a sink after real delivery with the keys
looked up through the loopback DNS server."""

from __future__ import annotations

import time

import dkim as dkimpy
import pytest
from dkim.canonicalization import Relaxed
from hypothesis import given
from hypothesis import strategies as st

from appliance import dkim
from tests.support.dkim import assert_both_signatures_verify, lookup, signed_route
from tests.support.relay import relay_overrides
from tests.support.wait import wait_for

FROM = b"From: Shop <orders@shop.test>\r\n"
CASES = {
    "plain": FROM + b"To: alice@example.test\r\nSubject: Order 42\r\n\r\nThank you.\r\n",
    "long headers": (
        FROM + b"To: " + b", ".join(b"customer%d@example.test" % i for i in range(30)) + b"\r\n"
        b"Subject: " + b"A very long subject line " * 20 + b"\r\n"
        b"List-Unsubscribe: <https://shop.test/u/" + b"x" * 400 + b">\r\n"
        b"Content-Type: text/plain;\r\n\tcharset=utf-8;\r\n\tformat=flowed\r\n\r\nBody.\r\n"
    ),
    "8-bit body": (
        FROM + b"To: alice@example.test\r\nSubject: =?utf-8?q?Bestellbest=C3=A4tigung?=\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + "Grüße aus Köln, ﾃｽﾄ, 注文 №42 – €19,99\r\n".encode()
    ),
    "no trailing CRLF": FROM + b"To: alice@example.test\r\nSubject: Order 43\r\n\r\nThank you.",
    "spaces and blank lines": (
        FROM + b"To:   alice@example.test  \r\nSubject:\tOrder  44 \r\n\r\nline with spaces   \r\n"
        b"\ttabbed\t line\r\n\r\n\r\n\r\n"
    ),
    "headers only": FROM + b"To: alice@example.test\r\nSubject: Empty\r\n\r\n",
}


@pytest.fixture(scope="module")
def keys():
    return dkim.generate("ap2026cases")


def dkimpy_fields(message: bytes, keys) -> bytes:
    signers = [
        (b"rsa-sha256", dkim.rsa_selector(keys.selector), keys.rsa_pem),
        (b"ed25519-sha256", dkim.ed25519_selector(keys.selector), keys.ed25519_seed),
    ]
    return b"".join(
        dkimpy.sign(
            message,
            name.encode(),
            b"shop.test",
            key.encode(),
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=algorithm,
            include_headers=list(dkim.SIGNED_HEADERS),
        )
        for algorithm, name, key in signers
    )


PIECES = [b" ", b"  ", b"\t", b" \t ", b"a", b"\xc3\xa4", b"\r\n", b"\r", b"\n", b".", b"X-A: 1", b"Subject:"]


@given(st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join))
def test_the_relaxed_body_is_dkimpys_for_any_mix_of_spaces_tabs_and_line_ends(body):
    assert dkim.relaxed_body(body) == Relaxed.canonicalize_body(body)


@given(st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join))
def test_the_message_is_split_as_dkimpy_splits_it(data):
    def outcome(parse):
        try:
            return parse(data)
        except (dkimpy.MessageFormatError, IndexError) as exc:  # IndexError: a continuation line first
            return type(exc)

    assert outcome(dkim.rfc822_parse) == outcome(dkimpy.rfc822_parse)


@pytest.mark.parametrize("case", list(CASES))
def test_the_signatures_are_dkimpys_byte_for_byte_and_verify(keys, case):
    message = CASES[case]
    while True:  # both within one second, so that both carry the same t=
        second = int(time.time())
        ours, theirs = (
            dkim.sign(message, "shop.test", keys.selector, keys.rsa_pem, keys.ed25519_seed),
            dkimpy_fields(message, keys),
        )
        if int(time.time()) == second:
            break
    assert ours == theirs
    verifier = dkimpy.DKIM(ours + message)
    assert verifier.verify(idx=0, dnsfunc=lookup(keys)) and verifier.verify(idx=1, dnsfunc=lookup(keys))


def test_keys_are_parsed_once_and_a_rotated_key_gets_its_own(keys):
    dkim.sign(CASES["plain"], "shop.test", keys.selector, keys.rsa_pem, keys.ed25519_seed)
    before = dkim._rsa_key.cache_info().misses, dkim._ed25519_key.cache_info().misses
    for _ in range(3):
        dkim.sign(CASES["plain"], "shop.test", keys.selector, keys.rsa_pem, keys.ed25519_seed)
    assert (dkim._rsa_key.cache_info().misses, dkim._ed25519_key.cache_info().misses) == before
    rotated = dkim.generate("ap2026rotated")
    signed = dkim.sign(CASES["plain"], "shop.test", rotated.selector, rotated.rsa_pem, rotated.ed25519_seed)
    assert dkim._rsa_key.cache_info().misses == before[0] + 1
    assert dkimpy.DKIM(signed + CASES["plain"]).verify(idx=0, dnsfunc=lookup(rotated))
    assert not dkimpy.DKIM(signed + CASES["plain"]).verify(idx=0, dnsfunc=lookup(keys))


@pytest.mark.parametrize("key", ["-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n", ""])
def test_an_unreadable_key_is_a_dkim_error_not_a_crash(key):
    with pytest.raises(dkimpy.DKIMException):
        dkim.sign(CASES["plain"], "shop.test", "s", key, None)


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port)


@pytest.mark.parametrize("case", list(CASES))
def test_each_case_delivered_verifies_with_dkimpy_at_the_sink(
    app, relay, account, shop_domain, dns_server, sink_mx, case
):
    sink = signed_route(app, shop_domain, dns_server, sink_mx)
    with relay.smtp.submission() as client:
        client.login(*account)
        client.sendmail("orders@shop.test", ["alice@example.test"], CASES[case])

    (received,) = wait_for(lambda: sink.messages)
    verifier = dkimpy.DKIM(received.data)
    assert [dkim.tags(v.decode())["a"] for n, v in verifier.headers if n.lower() == b"dkim-signature"] == [
        "rsa-sha256",
        "ed25519-sha256",
    ]
    assert_both_signatures_verify(app, received.data)
