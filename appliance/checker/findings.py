"""What every check of a graded message gives (a Finding), and the overall grade A-F."""

from __future__ import annotations

from dataclasses import asdict, dataclass

PASS, WARN, FAIL = "pass", "warn", "fail"
GRADES = "ABCDEF"
# Points a finding costs: its weight when it fails, a third of it when it warns. The grade is the
# band of what is left of 100: A from 90, B from 80, C from 70, D from 60, E from 50, F below.
_BAND = 10


@dataclass(frozen=True)
class Finding:
    key: str  # what was checked: spf, dkim, dmarc, bimi, ptr, blocklists, tls, spamassassin, …
    status: str  # pass | warn | fail
    summary: str  # what was found, in plain words
    fix: str = ""  # what to do about it ("" when there is nothing to do)
    weight: int = 5  # how much it matters to a receiver (points a failure costs)

    def as_dict(self) -> dict:
        return asdict(self)


def _cost(finding: Finding) -> float:
    return {PASS: 0, WARN: finding.weight / 3, FAIL: finding.weight}[finding.status]


def ordered(findings: list[Finding]) -> list[Finding]:
    """The findings with the most important fix first: failures, then warnings, heaviest first; the
    passes after them in the order they were checked."""
    return sorted(findings, key=lambda f: (f.status == PASS, -_cost(f)))


def grade(findings: list[Finding]) -> str:
    """The overall grade of the findings, A (nothing to fix) to F."""
    cost = sum(_cost(f) for f in findings)
    return GRADES[min(len(GRADES) - 1, int(cost // _BAND))]
