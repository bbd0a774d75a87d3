"""SpamAssassin's score of the message, with the rules that fired and what each means.

With SPAMD_ADDRESS set, the spamd there is asked (aiospamc, the REPORT command of spamd's protocol).
Without it, the appliance runs Debian's ``spamassassin`` command on the message itself, in local mode
(``--local``: no network tests, so nothing leaves the machine and the answer does not depend on
outside lists): a check address gets a message now and then, and one run takes about a second, so
no daemon is kept for it. When neither is there, the finding says so.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import aiospamc

from .findings import FAIL, PASS, WARN, Finding

COMMAND = "spamassassin"
TIMEOUT = 60  # seconds one scan may take
_DETAILS = re.compile(r"Content analysis details:\s*\((-?[\d.]+) points?, (-?[\d.]+) required\)")
_RULE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z][A-Z0-9_]+)\s+(.*?)\s*$")
_MISSING = "apt install spamassassin (Debian's package), or set SPAMD_ADDRESS to a spamd"


@dataclass
class Scan:
    score: float
    required: float
    rules: list[tuple[float, str, str]] = field(default_factory=list)  # (points, name, description)


def read_report(text: str) -> Scan | None:
    """Read SpamAssassin's report (the "Content analysis details" table); None when there is none."""
    match = _DETAILS.search(text)
    if match is None:
        return None
    scan = Scan(float(match.group(1)), float(match.group(2)))
    for line in text[match.end() :].splitlines():
        rule = _RULE.match(line)
        if rule:
            scan.rules.append((float(rule.group(1)), rule.group(2), rule.group(3)))
        elif line.startswith(" " * 10) and scan.rules:  # a description continued on the next line
            points, name, description = scan.rules[-1]
            scan.rules[-1] = (points, name, f"{description} {line.strip()}")
    return scan


def _run_local(settings: dict, data: bytes) -> str:
    home = Path(settings["DATA_DIR"]) / "spamassassin"  # its user_prefs, kept out of the service's home
    home.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [COMMAND, "--local", "--test-mode"],
        input=data,
        capture_output=True,
        timeout=TIMEOUT,
        env={**os.environ, "HOME": str(home)},
        check=False,
    )
    return done.stdout.decode("utf-8", "replace")


def _ask_spamd(address: str, data: bytes) -> str:
    host, _, port = address.rpartition(":")
    ask = aiospamc.report(data, host=host.strip("[]") or "127.0.0.1", port=int(port), timeout=aiospamc.Timeout(TIMEOUT))
    return asyncio.run(ask).body.decode("utf-8", "replace")  # the same report as the command's


def scan(settings: dict, data: bytes) -> Scan | str:
    """SpamAssassin's verdict on ``data``, or a sentence saying why there is none."""
    address = settings["SPAMD_ADDRESS"]
    try:
        if address:
            text = _ask_spamd(address, data)
        elif shutil.which(COMMAND):
            text = _run_local(settings, data)
        else:
            return "SpamAssassin is not installed here, so the spam score was not checked"
    except subprocess.TimeoutExpired:
        return f"SpamAssassin did not answer within {TIMEOUT} s"
    except Exception as exc:  # noqa: BLE001 — spamd refused, went away, or answered something else
        return f"SpamAssassin could not be asked ({type(exc).__name__}: {exc})"
    found = read_report(text)
    return found if found is not None else "SpamAssassin gave no report"


def spam_finding(settings: dict, data: bytes) -> Finding:
    found = scan(settings, data)
    if isinstance(found, str):
        return Finding("spamassassin", WARN, found, _MISSING, 3)
    fired = sorted((r for r in found.rules if r[0] > 0), key=lambda r: -r[0])
    explained = "; ".join(f"{name} (+{points:g}): {description}" for points, name, description in fired)
    summary = f"SpamAssassin scores it {found.score:g} (spam from {found.required:g})"
    if fired:
        summary += f"; rules that count against it: {explained}"
    fix = "change what the rules above point at (each says what it saw)" if fired else ""
    if found.score >= found.required:
        return Finding("spamassassin", FAIL, summary, fix, 30)
    if found.score >= found.required / 2:
        return Finding("spamassassin", WARN, summary, fix, 30)
    return Finding("spamassassin", PASS, summary, fix if found.score > 0 else "", 30)
