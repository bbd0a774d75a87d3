"""Send one message through the appliance with Django's SMTP email backend.

Usage: python django_send.py '<json>' with host, port, use_tls / use_ssl, username, password, from,
to, subject. Django builds its TLS context with ssl.create_default_context(), so the CA is trusted
the ordinary way: the caller sets SSL_CERT_FILE. Exit status 0 only when Django says it sent one.
"""

import json
import socket
import sys

import django
from django.conf import settings
from django.core.mail import send_mail

cfg = json.loads(sys.argv[1])

# The test name resolves to loopback for this process only (the test suite never edits /etc/hosts);
# Django still connects to, and verifies, the certificate name.
_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, *args, **kwargs):
    return _real_getaddrinfo("127.0.0.1" if host == cfg["host"] else host, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo

settings.configure(
    EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
    EMAIL_HOST=cfg["host"],
    EMAIL_PORT=cfg["port"],
    EMAIL_HOST_USER=cfg["username"],
    EMAIL_HOST_PASSWORD=cfg["password"],
    EMAIL_USE_TLS=cfg.get("use_tls", False),
    EMAIL_USE_SSL=cfg.get("use_ssl", False),
    EMAIL_TIMEOUT=30,
)
django.setup()
sent = send_mail(cfg["subject"], "Sent by Django in the appliance's tests.\n", cfg["from"], [cfg["to"]])
print(json.dumps({"ok": sent == 1, "sent": sent}))
sys.exit(0 if sent == 1 else 1)
