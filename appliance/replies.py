"""Every SMTP reply the appliance sends, as a named constant (DESIGN §4).

4xx is temporary (the client retries), 5xx permanent; every policy refusal carries an RFC 3463
enhanced status code and is never a bare 500.
"""

ACCEPTED = "250 Ok: queued as {id}"  # Symfony Mailer and PHPMailer read the id from this form
AUTH_SUCCESS = "235 2.7.0 Authentication successful"
ENCRYPTION_REQUIRED = "538 5.7.11 Encryption required for requested authentication mechanism"
AUTH_REQUIRED = "530 5.7.0 Authentication required"
BAD_CREDENTIALS = (
    "535 5.7.8 Authentication credentials invalid "
    "(use the SMTP account's username and password, not the dashboard login)"
)
ACCOUNT_DISABLED = "535 5.7.8 Authentication refused: this SMTP account is disabled"
IP_NOT_AUTHORIZED = "535 5.7.8 Authentication refused: client IP {ip} is not authorized for this account"
# A session signed in before its account changed, refused at its next MAIL FROM (it may sign in again).
SESSION_ACCOUNT_DELETED = "535 5.7.8 Authentication expired: this SMTP account was deleted"
SESSION_ACCOUNT_DISABLED = "535 5.7.8 Authentication expired: this SMTP account was disabled"
SESSION_CREDENTIALS_CHANGED = (
    "535 5.7.8 Authentication expired: this SMTP account's password was reset, or the account "
    "disabled, after this session signed in; sign in again"
)
TOO_MANY_AUTH_FAILURES = "421 4.7.0 Too many failed authentication attempts, try later"
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, try later"
TOO_MANY_CONNECTIONS_FROM_IP = "421 4.7.0 Too many connections from your address, try later"
TIMEOUT = "421 4.4.2 {hostname} Timeout waiting for the client, closing the connection"
TLS_ALREADY_ACTIVE = "503 5.5.1 TLS is already active"
CONTROL_CHARACTERS = "501 5.5.2 Syntax error: control characters (such as NUL) are not allowed in commands"
SENDER_NOT_AUTHORIZED = "553 5.7.1 Sender address not authorized"
# Sender authorization: MAIL FROM, then again on the From: header after DATA.
SENDER_NOT_VERIFIED = "553 5.7.1 Sender address not authorized: {address} is not a verified sender or domain"
SENDER_NOT_AUTHORIZED_FOR_ACCOUNT = "553 5.7.1 Sender address not authorized: this account may not send as {address}"
# {field} is the header the address was read from: "From:" or "Sender:".
FROM_NOT_VERIFIED = (
    "553 5.7.1 Sender address not authorized: the {field} header address {address} is not a verified sender or domain"
)
FROM_NOT_AUTHORIZED_FOR_ACCOUNT = (
    "553 5.7.1 Sender address not authorized: this account may not send with the {field} header address {address}"
)
RELAY_DENIED = "554 5.7.1 Relay access denied"
# An unsubscribe address (mailto: of List-Unsubscribe) whose token is not one of ours.
UNSUBSCRIBE_UNKNOWN = "550 5.1.1 No such unsubscribe address"
# The DMARC report address, dmarc-reports@HOSTNAME (docs/dmarc.md): what is refused there, before the 250.
DMARC_NOT_A_REPORT = (
    "550 5.6.0 Not a DMARC report: {address} takes only DMARC aggregate reports "
    "(RFC 7489 XML, zipped, gzipped or plain): {reason}"
)
DMARC_MALFORMED = "554 5.6.0 Malformed DMARC report: {reason}"
DMARC_TOO_BIG = "552 5.3.4 DMARC report too big: {reason}"
DMARC_UNKNOWN_DOMAIN = (
    "550 5.7.1 DMARC reports for {domain} are not taken here: it is not a sending domain of this appliance"
)
DMARC_ALONE = "452 4.5.3 The DMARC report address is the only recipient of its message: send to the others apart"
# A list address, <list-id>@LISTS_DOMAIN (docs/campaigns-and-lists.md#list-addresses).
LIST_NOT_ALLOWED = "550 5.7.1 This account may not send to list {list}: it is not tied to the list"
LIST_UNKNOWN = "550 5.1.1 No such list: {address}"
LIST_ALONE = "452 4.5.3 A list address is the only recipient of its message: send to the others in another message"
# A check address of the deliverability checker, check-<token>@HOSTNAME (docs/checker.md).
CHECK_UNKNOWN = "550 5.1.1 No such check address: make one with `appliance check new` or on Test my setup"
CHECK_USED = "550 5.1.1 This check address has graded its message: make a new one to test again"
CHECK_EXPIRED = "550 5.1.1 This check address has expired unused: make a new one"
CHECK_ALONE = "452 4.5.3 A check address is the only recipient of its message: send to the others in another message"
MESSAGE_TOO_BIG = "552 5.3.4 Message size exceeds limit"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
QUOTA_EXCEEDED = "451 4.7.1 Sending quota exceeded, try later"
QUOTA_REJECTED = "550 5.7.1 Sending quota exceeded: this account may send {limit} recipients per {period}"
STORAGE_FULL = "452 4.3.1 Insufficient system storage"
LOCAL_ERROR = "451 4.3.0 Temporary local problem, try later"
BAD_SENDER_SYNTAX = "553 5.1.7 Bad sender address: {reason}"
BAD_RECIPIENT_SYNTAX = "553 5.1.3 Bad recipient address: {reason}"
MALFORMED_ADDRESS = "501 5.1.3 Malformed address: expected <local-part@domain>"
MALFORMED_MESSAGE = "554 5.6.0 Malformed message: {reason}"
HEADER_TOO_BIG = "552 5.3.4 Message header section exceeds {limit} octets"
TOO_MANY_HEADER_LINES = "554 5.6.0 Malformed message: the header section has more than {limit} lines"
NUL_IN_MESSAGE = "554 5.6.0 Malformed message: NUL bytes are not allowed (RFC 5322 2.3)"
LINE_TOO_LONG = "500 5.5.2 Line too long (RFC 5321 4.5.3.1.6 allows 1000 octets)"
RCPT_OK = "250 2.1.5 Ok"
MAIL_OK = "250 2.1.0 Ok"

# aiosmtpd's own wording for situations that have a constant above (matched on the whole reply).
AIOSMTPD_REWRITES = {
    "552 Error: message size exceeds fixed maximum message size": MESSAGE_TOO_BIG,
    "553 5.1.3 Error: malformed address": MALFORMED_ADDRESS,
    "501 Syntax: MAIL FROM: <address>": "501 5.5.4 Syntax: MAIL FROM:<address>",
    "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]": (
        "501 5.5.4 Syntax: MAIL FROM:<address> [SP <mail-parameters>]"
    ),
    "501 Syntax: RCPT TO: <address>": "501 5.5.4 Syntax: RCPT TO:<address>",
    "501 Syntax: RCPT TO: <address> [SP <mail-parameters>]": (
        "501 5.5.4 Syntax: RCPT TO:<address> [SP <mail-parameters>]"
    ),
    # aiosmtpd closes after this one: RFC 5321 §3.8 gives 421 for a server that closes the session.
    "502 5.5.1 Too many unrecognized commands, goodbye.": (
        "421 4.7.0 Too many unrecognized commands, closing the connection"
    ),
}
