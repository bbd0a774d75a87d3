"""Policy: what may be sent, by whom, when.

Pure rules over plain data, tested without sockets or a database:
- ``acceptance``: addresses, senders and recipients at the SMTP edge, priority.
- ``sending``: quotas, provider groups and pacing, rate-limit back-off, warm-up, priority lanes,
  the reputation verdict.

Their database side, each its own module: ``quotas``, ``groups`` (provider groups, send counts),
``warmup`` and ``reputation``. Nothing here sends mail: what deserves an alert comes back as an
``Alarm`` for appliance/guard.py to raise.
"""
