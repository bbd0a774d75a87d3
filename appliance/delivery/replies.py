"""A remote (or our own) SMTP reply, with its RFC 3463 enhanced status code split out."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")

# RFC 3463 subjects that say the address itself is bad: unknown mailbox (x.1.1), bad domain (x.1.2),
# bad syntax (x.1.3), mailbox moved (x.1.6), null MX (x.1.10, RFC 7505).
_BAD_ADDRESS = {"1.1", "1.2", "1.3", "1.6", "1.10"}
_UNKNOWN_USER_WORDS = ("user unknown", "unknown user", "no such user", "does not exist")


@dataclass(frozen=True)
class Reply:
    code: int
    enhanced: str  # "5.1.1", or "" when the server gave none
    text: str

    @classmethod
    def parse(cls, code: int, raw: bytes | str) -> Reply:
        """Build a reply from smtplib's (code, text); multi-line texts are joined with spaces."""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        text = " ".join(line.strip() for line in text.splitlines())
        match = _ENHANCED.match(text)
        if match:
            return cls(code, ".".join(match.groups()), text[match.end() :])
        return cls(code, "", text)

    @property
    def temporary(self) -> bool:
        return not 200 <= self.code < 300 and self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    @property
    def status(self) -> str:
        """The RFC 3464 Status value: the enhanced code, or one derived from the basic code."""
        return self.enhanced or f"{str(self.code)[0]}.0.0"

    @property
    def hard(self) -> bool:
        """Tell whether this permanent failure says the address is bad (worth suppressing)."""
        if not self.permanent:
            return False
        if self.enhanced:
            return self.enhanced.split(".", 1)[1] in _BAD_ADDRESS
        return self.code in (550, 551, 553) and any(w in self.text.lower() for w in _UNKNOWN_USER_WORDS)

    def __str__(self) -> str:
        return " ".join(str(p) for p in (self.code, self.enhanced, self.text) if p != "")
