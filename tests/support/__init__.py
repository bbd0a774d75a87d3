"""What the tests share: servers they start (PostgreSQL, Redis, DNS, sink MXs), ports, clients and
helpers that drive the appliance. Fixtures stay in the conftest.py files; these are plain modules."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout

# SCALEOUT_TESTS=1 runs the tests on PostgreSQL and Redis (DESIGN §5): each test gets a fresh
# database on a private PostgreSQL cluster and an emptied redis-server, both started for the session.
SCALEOUT = os.environ.get("SCALEOUT_TESTS") == "1"
