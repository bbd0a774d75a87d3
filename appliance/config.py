"""Every setting, declared once: name, default, help.

Values are read, later winning, from: the defaults below, ``DATA_DIR/appliance.toml``,
environment variables ``APPLIANCE_<NAME>``, then the overrides passed to ``create_app``.
The README's configuration table is generated from SETTINGS (``python -m appliance.config``).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    type: type = str

    def parse(self, raw: Any) -> Any:
        """Turn a raw value (TOML value or environment string) into this setting's type."""
        if self.type is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off", ""}:
                return False
            raise ConfigError(f"{self.name}: expected true/false, got {raw!r}")
        if self.type is int:
            try:
                return int(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"{self.name}: expected a whole number, got {raw!r}") from None
        if self.type is float:
            try:
                return float(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"{self.name}: expected a number, got {raw!r}") from None
        return "" if raw is None else str(raw)


class ConfigError(ValueError):
    """A setting has a value that cannot be used."""


def _fqdn() -> str:
    return socket.getfqdn() or "localhost"


MIB = 1024 * 1024

SETTINGS: tuple[Setting, ...] = (
    Setting("DATA_DIR", "./data", "Database, queue, TLS and DKIM keys, secret key."),
    Setting("HOSTNAME", "", "Name in the 220 banner, EHLO and the certificate. Empty: the machine's FQDN."),
    Setting("WEB_LISTEN", "127.0.0.1:8025", "Dashboard address as `HOST:PORT`."),
    Setting(
        "WEB_TLS_LISTEN",
        "",
        "HTTPS dashboard address as `HOST:PORT` (the same dashboard, with the SMTP certificate; replaced "
        "certificate files are taken without a restart). Empty: no HTTPS.",
    ),
    Setting(
        "HSTS_MAX_AGE",
        31536000,
        "Seconds of the `Strict-Transport-Security` header on HTTPS responses, sent only with a trusted "
        "certificate (TLS_CERT, or ACME's once issued), never with the generated local-CA one. 0: never sent.",
        int,
    ),
    Setting(
        "TRUSTED_PROXIES",
        "",
        "Reverse proxies (addresses or CIDRs, separated by `,`) whose X-Forwarded-For, -Proto and -Host "
        "headers are believed, one hop. Empty: those headers are ignored from every peer.",
    ),
    Setting(
        "SMTP_LISTEN",
        "587/starttls,2525/starttls,465/tls,25/starttls",
        "SMTP listeners as `[ADDRESS:]PORT/MODE` or a range `[ADDRESS:]FIRST-LAST/MODE` (at most 5000 "
        "ports), MODE `starttls` or `tls` (implicit TLS), `/mx` at the end for MX-facing. A port that "
        "cannot be bound is reported and skipped.",
    ),
    Setting(
        "SMARTHOST",
        "",
        "`smtp://user:pass@host:port` (STARTTLS) or `smtps://…` (implicit TLS): relay all mail upstream instead of MX.",
    ),
    Setting(
        "SMARTHOST_CA_FILE",
        "",
        "PEM file of a private CA that the smarthost's certificate is verified against (empty: system CAs).",
    ),
    Setting(
        "LISTS_DOMAIN",
        "",
        "Domain of the list addresses `<list-id>@LISTS_DOMAIN`: mail to one from an account tied to the list goes "
        "to each subscribed member (docs/campaigns-and-lists.md). Empty: `lists.` + HOSTNAME.",
    ),
    Setting(
        "LIST_BATCH",
        200,
        "Members a worker adds to a list send per database transaction (small: other mail's intake never waits "
        "long behind it).",
        int,
    ),
    Setting("DNS_SERVERS", "", "Resolver override, `ip[:port],…`. Empty: the system resolver."),
    Setting("DELIVERY_PORT", 25, "Port used on MX hosts (tests point it at a loopback sink).", int),
    Setting("DATABASE_URL", "", "Empty: SQLite in DATA_DIR. `postgresql://…` for the scale-out mode."),
    Setting("QUEUE_URL", "", "Empty: SqliteHuey in DATA_DIR. `redis://…` for the scale-out mode."),
    Setting(
        "TLS_CERT",
        "",
        "PEM certificate (chain) for SMTP and the HTTPS dashboard; a replaced file is taken without a restart. "
        "Empty: generated from a local CA in DATA_DIR/tls.",
    ),
    Setting("TLS_KEY", "", "PEM private key for TLS_CERT."),
    Setting(
        "ACME_EMAIL",
        "",
        "Contact address of the ACME account: set, the appliance obtains and renews a certificate for HOSTNAME "
        "by itself (HTTP-01 on ACME_HTTP_LISTEN; docs/tls.md). Cannot be combined with TLS_CERT/TLS_KEY. "
        "Empty: ACME off.",
    ),
    Setting(
        "ACME_DIRECTORY",
        "https://acme-v02.api.letsencrypt.org/directory",
        "Directory URL of the ACME certificate authority (Let's Encrypt's production one by default).",
    ),
    Setting(
        "ACME_HTTP_LISTEN",
        ":80",
        "`[HOST]:PORT` of the plain-HTTP listener run while ACME_EMAIL is set: it answers the CA's "
        "`/.well-known/acme-challenge/…` requests and redirects everything else to the HTTPS dashboard "
        "(WEB_TLS_LISTEN). Not bound when ACME is off.",
    ),
    Setting(
        "ACME_CA_FILE",
        "",
        "PEM file of a private CA that ACME_DIRECTORY's HTTPS certificate is verified against (a private "
        "ACME server). Empty: the CAs of certifi, or the file in REQUESTS_CA_BUNDLE.",
    ),
    Setting(
        "LOCAL_DOMAINS",
        "",
        "Extra domains (comma separated) that port 25 accepts mail for without AUTH, besides HOSTNAME.",
    ),
    Setting("MAX_MESSAGE_SIZE", 25 * MIB, "Largest message accepted, in bytes (advertised as SIZE).", int),
    Setting("MAX_HEADER_SIZE", 256 * 1024, "Largest header section of a message, in bytes; beyond it: 552 5.3.4.", int),
    Setting(
        "MAX_HEADER_LINES",
        2000,
        "Most lines in a message's header section (fields and their folded continuation lines); beyond it: 554 5.6.0.",
        int,
    ),
    Setting("MAX_RECIPIENTS", 100, "Recipients accepted per message.", int),
    Setting(
        "API_RATE_LIMIT",
        600,
        "Requests per minute one API key may make to the HTTP API (bursts up to as many); beyond it: 429 with "
        "Retry-After. Counted by each process that serves the dashboard. 0: no limit.",
        int,
    ),
    Setting("MAX_CONNECTIONS", 200, "Concurrent SMTP connections across all listeners; beyond it: 421.", int),
    Setting(
        "MAX_CONNECTIONS_PER_IP",
        50,
        "Concurrent SMTP connections from one client address (an IPv6 client: its /64); beyond it: 421.",
        int,
    ),
    Setting(
        "SMTP_TIMEOUT",
        300,
        "Seconds an idle SMTP client is kept, also between two reads during DATA "
        "(RFC 5321 §4.5.3.2: at least 5 minutes); then 421 4.4.2.",
        int,
    ),
    Setting(
        "SMTP_FIRST_COMMAND_TIMEOUT",
        30,
        "Seconds a new SMTP client (or an implicit-TLS handshake) has to send its first command; then 421 4.4.2.",
        int,
    ),
    Setting(
        "AUTH_FAILURES_PER_CONNECTION", 3, "Failed AUTH attempts after which a connection is closed with 421.", int
    ),
    Setting(
        "AUTH_FAILURES_PER_USERNAME",
        5,
        "Failed AUTH attempts for one username from one IP within AUTH_FAILURE_WINDOW after which that IP "
        "gets 421 for that username.",
        int,
    ),
    Setting(
        "AUTH_FAILURES_PER_IP",
        10,
        "Failed AUTH attempts from one IP (all usernames) within AUTH_FAILURE_WINDOW after which that IP gets "
        "421 for every username that has not logged in from it before.",
        int,
    ),
    Setting("AUTH_FAILURE_WINDOW", 300, "Seconds over which failed AUTH attempts per IP are counted.", int),
    Setting("AUTH_COOLDOWN", 900, "Seconds a cool-down (per username and IP, or per IP) lasts.", int),
    Setting("GROUP_COMMIT_MAX", 64, "Most accepted messages written in one database transaction.", int),
    Setting("WORKERS", 8, "Delivery worker threads of the embedded Huey consumer.", int),
    Setting(
        "WORKER_POLL_INTERVAL",
        0.1,
        "Seconds an idle worker waits before polling the queue again (Huey's max_delay).",
        float,
    ),
    Setting(
        "RETRY_SCHEDULE",
        "60,300,900,1800,3600,7200,14400",
        "Seconds between delivery attempts (comma separated); the last value repeats.",
        str,
    ),
    Setting("GIVE_UP_AFTER", 72 * 3600, "Seconds after acceptance when a deferred delivery fails and bounces.", int),
    Setting("SWEEP_INTERVAL", 30, "Seconds between sweeps that re-enqueue due and stale deliveries.", int),
    Setting(
        "LEASE_SECONDS", 300, "Seconds a worker owns a delivery it is sending; after that a sweep takes it back.", int
    ),
    Setting(
        "SESSIONS_PER_DESTINATION",
        10,
        "Concurrent outbound SMTP sessions per destination domain (Postfix's default is 20).",
        int,
    ),
    Setting("CONNECT_TIMEOUT", 30, "Seconds to wait for an outbound SMTP connection.", int),
    Setting("COMMAND_TIMEOUT", 300, "Seconds to wait for an outbound SMTP reply (RFC 5321 §4.5.3.2).", int),
    Setting("DNS_TIMEOUT", 10, "Seconds a DNS lookup may take before the delivery is deferred.", float),
    Setting(
        "METRICS_TOKEN",
        "",
        "Bearer token that lets a Prometheus server other than on loopback read `/metrics` "
        "(`Authorization: Bearer …`). Empty: `/metrics` answers loopback only.",
    ),
    Setting(
        "METRICS_LISTEN",
        "",
        "`HOST:PORT` where a process that runs no dashboard (`--role smtp` or `worker`) serves its own "
        "`/metrics`. Empty: not served there.",
    ),
    Setting(
        "SPAMD_ADDRESS",
        "",
        "A spamd the deliverability checker asks for SpamAssassin's score, as `HOST:PORT`. Empty: the checker "
        "runs Debian's `spamassassin` command itself, local tests only (docs/checker.md).",
    ),
    Setting(
        "SECRET_KEY", "", "Signs sessions and links. Empty: generated on first start and kept in DATA_DIR/secret_key."
    ),
    Setting(
        "PUBLIC_URL",
        "",
        "Dashboard address as people reach it, used in links sent by mail (sender verification). Empty: "
        "`http://WEB_LISTEN`.",
    ),
    Setting(
        "TRACKING_URL",
        "",
        "Address of the open, click and unsubscribe links in tracked and broadcast mail (this web server's "
        "`/t/…` paths, reachable by every recipient). Empty: PUBLIC_URL.",
    ),
    Setting(
        "NOTIFY_FROM",
        "",
        "Sender of the appliance's own mail (verification links, alerts). Empty: `postmaster@HOSTNAME`.",
    ),
    Setting(
        "ALERT_EMAILS",
        "",
        "Admin addresses (separated by `;`) that get each new alert by mail, sent through the appliance. Empty: none.",
    ),
    Setting("VERIFY_LINK_TTL", 48 * 3600, "Seconds a sender verification link stays valid.", int),
    Setting(
        "DOMAIN_CHECK_INTERVAL",
        6 * 3600,
        "Seconds between DNS re-checks of every sending domain; a record that breaks raises an alert.",
        int,
    ),
    Setting(
        "LOW_PRIORITY_SHARE",
        0.1,
        "Share of every cap (pacing, warm-up) kept for lower-priority mail while it waits, so it still "
        "progresses under heavy high-priority traffic.",
        float,
    ),
    Setting(
        "THROTTLE_SECONDS",
        900,
        "Seconds a provider group is slowed down after a remote rate-limit reply (421, 4.7.x); doubles on "
        "each repeat, up to 16 times.",
        int,
    ),
    Setting("REPUTATION_WARN_BOUNCE", 0.05, "Bounce rate of an account over the window that raises a warning.", float),
    Setting(
        "REPUTATION_WARN_COMPLAINT", 0.001, "Complaint rate of an account over the window that raises a warning.", float
    ),
    Setting(
        "REPUTATION_HOLD_BOUNCE",
        0.10,
        "Bounce rate of an account over the window at which its new mail is held.",
        float,
    ),
    Setting(
        "REPUTATION_HOLD_COMPLAINT",
        0.003,
        "Complaint rate of an account over the window at which its new mail is held.",
        float,
    ),
    Setting("REPUTATION_WINDOW_HOURS", 168, "Rolling window of the reputation guard, in hours.", int),
    Setting(
        "REPUTATION_MIN_VOLUME",
        200,
        "Finished deliveries an account needs within the window before its rates are judged.",
        int,
    ),
    Setting("REPUTATION_CHECK_INTERVAL", 300, "Seconds between reputation checks of every account.", int),
    Setting(
        "RETENTION_BODY_DAYS",
        30,
        "Days a message's body (headers and content) is kept after it was received; then it is purged and "
        "the message page says so. Mail still queued, sending, deferred or held is never purged. 0: for ever.",
        int,
    ),
    Setting(
        "RETENTION_DAYS",
        90,
        "Days a message is kept with its deliveries, attempts and events (the message log, the statistics); "
        "then it is purged. 0: for ever.",
        int,
    ),
    Setting(
        "DISK_ALERT_FREE_MB",
        1024,
        "Free MiB on the disk of DATA_DIR under which the `disk-space-low` alert is raised (checked every "
        "SWEEP_INTERVAL), well before a full disk makes intake answer 452 4.3.1. 0: no alert.",
        int,
    ),
    Setting(
        "WEBHOOK_ALLOW_PRIVATE",
        False,
        "Allow webhook URLs whose host is or resolves to a loopback, private, link-local, multicast or "
        "unspecified address (an intranet receiver, tests). Off: such URLs are refused when an endpoint is "
        "created and again at every call, so a webhook cannot reach the machine's own services.",
        bool,
    ),
)

BY_NAME = {s.name: s for s in SETTINGS}
ENV_PREFIX = "APPLIANCE_"
# Variables with the prefix that are not settings: the installer's target folder (scripts/install-service.sh).
NOT_SETTINGS = {"APPLIANCE_PREFIX"}


def _did_you_mean(name: str, written: str) -> str:
    """' (did you mean …?)' with the setting closest to ``name``, ``written`` as the user would type it; or ''."""
    close = difflib.get_close_matches(name.upper(), BY_NAME, n=1)
    return f" (did you mean {written.format(close[0])!r}?)" if close else ""


def load(overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Return the effective settings: defaults < appliance.toml < environment < overrides."""
    overrides = dict(overrides or {})
    environ = os.environ if environ is None else environ
    unknown = set(overrides) - set(BY_NAME)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    # A misspelt variable would otherwise be ignored without a word, as if it had not been set.
    for variable in sorted(environ):
        if (
            variable.startswith(ENV_PREFIX)
            and variable not in NOT_SETTINGS
            and variable.removeprefix(ENV_PREFIX) not in BY_NAME
        ):
            raise ConfigError(
                f"unknown environment variable {variable!r}"
                + _did_you_mean(variable.removeprefix(ENV_PREFIX), ENV_PREFIX + "{}")
            )

    def env(name: str) -> str | None:
        return environ.get(ENV_PREFIX + name)

    # DATA_DIR decides where appliance.toml lives, so it is resolved first.
    data_dir = overrides.get("DATA_DIR") or env("DATA_DIR") or BY_NAME["DATA_DIR"].default
    values: dict[str, Any] = {s.name: s.default for s in SETTINGS}
    toml_path = Path(data_dir) / "appliance.toml"
    if toml_path.exists():
        try:
            file_values = tomllib.loads(toml_path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{toml_path}: {exc}") from None
        for key, raw in file_values.items():
            name = key.upper()
            if name not in BY_NAME:
                raise ConfigError(f"{toml_path}: unknown setting {key!r}" + _did_you_mean(key, "{}").lower())
            values[name] = BY_NAME[name].parse(raw)
    for setting in SETTINGS:
        raw = env(setting.name)
        if raw is not None:
            values[setting.name] = setting.parse(raw)
    for name, raw in overrides.items():
        values[name] = BY_NAME[name].parse(raw)
    values["DATA_DIR"] = str(Path(values["DATA_DIR"]).resolve())
    if not values["HOSTNAME"]:
        values["HOSTNAME"] = _fqdn()
    if not values["LISTS_DOMAIN"]:
        values["LISTS_DOMAIN"] = "lists." + values["HOSTNAME"]
    values["LISTS_DOMAIN"] = values["LISTS_DOMAIN"].strip().lower().rstrip(".")
    if values["LIST_BATCH"] < 1:
        raise ConfigError(f"LIST_BATCH: expected a whole number of at least 1, got {values['LIST_BATCH']}")
    if values["ACME_EMAIL"]:
        check_acme(values)
    return values


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def check_acme(values: dict[str, Any]) -> None:
    """Refuse ACME settings that cannot give a certificate, with the setting to change."""
    if values["TLS_CERT"] or values["TLS_KEY"]:
        raise ConfigError(
            "ACME_EMAIL and TLS_CERT/TLS_KEY are both set: ACME writes its own certificate in DATA_DIR/acme. "
            "Empty ACME_EMAIL to serve your files, or TLS_CERT and TLS_KEY to let ACME obtain one"
        )
    if "@" not in values["ACME_EMAIL"].strip("@"):
        raise ConfigError(f"ACME_EMAIL: expected an email address, got {values['ACME_EMAIL']!r}")
    hostname = values["HOSTNAME"]
    if "." not in hostname.strip(".") or _is_address(hostname):
        raise ConfigError(
            f"ACME_EMAIL is set but HOSTNAME {hostname!r} is not a DNS name a CA can validate: set HOSTNAME to "
            "the name (pointing at this machine) that clients connect to"
        )
    spec = values["ACME_HTTP_LISTEN"]
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"ACME_HTTP_LISTEN: expected [HOST]:PORT (the CA reaches port 80 of HOSTNAME), got {spec!r}")
    if not values["ACME_DIRECTORY"].startswith(("https://", "http://")):
        raise ConfigError(f"ACME_DIRECTORY: expected the directory's https:// URL, got {values['ACME_DIRECTORY']!r}")


def markdown_table() -> str:
    """Render SETTINGS as the README's configuration table, with how each one is written."""
    lines = [
        "Each setting is read, later winning, from its default, the file `DATA_DIR/appliance.toml` "
        "(`./data/appliance.toml` unless `APPLIANCE_DATA_DIR` moves it; keys in lower case, "
        'e.g. `hostname = "relay.example.com"`), then its environment variable. An unknown key or '
        "`APPLIANCE_…` variable stops the start with its name and the closest setting.",
        "",
        "| environment variable | `appliance.toml` key | default | meaning |",
        "|---|---|---|---|",
    ]
    for s in SETTINGS:
        default = "(empty)" if s.default == "" else f"`{s.default}`"
        lines.append(f"| `{ENV_PREFIX}{s.name}` | `{s.name.lower()}` | {default} | {s.help} |")
    return "\n".join(lines)


README_BEGIN = "<!-- settings:begin (generated by `python -m appliance.config --write README.md`) -->"
README_END = "<!-- settings:end -->"


def with_table(text: str) -> str:
    """Return README text with the block between the settings markers replaced by the table."""
    head, _, rest = text.partition(README_BEGIN)
    _, _, tail = rest.partition(README_END)
    return f"{head}{README_BEGIN}\n{markdown_table()}\n{README_END}{tail}"


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--write"]:
        path = Path(sys.argv[2])
        path.write_text(with_table(path.read_text()))
    else:
        print(markdown_table())
