"""`appliance doctor`: checks of the set-up, each saying in plain words what is wrong and what to do.

Every check is a function of the settings that returns Result objects and never raises: a missing
file, a refused connection or a silent DNS server is a result (FAIL or WARN), not a traceback.
The checks only read: they connect to the appliance's own listeners, ask DNS, and open (then QUIT)
one SMTP session to a remote MX or the smarthost.
"""

from __future__ import annotations

from .address import check_blocklists, check_dns, check_ptr, outbound_ip
from .base import FAIL, OK, TIMEOUT, WARN, Result
from .certificate import check_certificate
from .listeners import check_ports
from .outbound import PROBE_DOMAIN, check_outbound


def run(
    settings: dict, ip: str | None = None, probe_domain: str = PROBE_DOMAIN, timeout: float = TIMEOUT
) -> list[Result]:
    """Run every check; ``ip`` is the public outbound address when the admin gives it (--ip)."""
    # A doctor should answer within seconds, whatever DNS_TIMEOUT delivery is allowed.
    settings = {**settings, "DNS_TIMEOUT": min(float(settings["DNS_TIMEOUT"]), timeout)}
    explicit = ip is not None
    if ip is None:
        ip = outbound_ip()
    checks = [
        ("ports", settings["SMTP_LISTEN"], lambda: check_ports(settings, timeout)),
        ("certificate", settings["TLS_CERT"] or "generated", lambda: [check_certificate(settings)]),
        ("dns", settings["HOSTNAME"], lambda: [check_dns(settings)]),
        ("ptr", ip or "?", lambda: [check_ptr(settings, ip, explicit)]),
        ("outbound", probe_domain, lambda: [check_outbound(settings, probe_domain, timeout)]),
        ("blocklists", ip or "?", lambda: check_blocklists(settings, ip, explicit)),
    ]
    results: list[Result] = []
    for name, target, check in checks:
        try:
            results += check()
        except Exception as exc:  # a bug in one check must not hide the others' answers
            results.append(
                Result(
                    name,
                    target,
                    WARN,
                    f"could not check ({type(exc).__name__}: {exc})",
                    "this is a bug in the doctor: please report it",
                )
            )
    return results


def summary(results: list[Result]) -> dict[str, int]:
    """Count the results per status."""
    return {status: sum(r.status == status for r in results) for status in (OK, WARN, FAIL)}
