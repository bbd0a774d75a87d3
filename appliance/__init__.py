"""The appliance: ``create_app`` builds everything and starts nothing (DESIGN §1)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask

from . import analytics, config, db, events


def _secret_key(data_dir: Path) -> str:
    path = data_dir / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the Flask app: settings → data dir → database (migrated) → blueprints."""
    settings = config.load(overrides)
    data_dir = Path(settings["DATA_DIR"])
    if not data_dir.exists():  # created here: readable by this user only (keys, hashes, bodies)
        data_dir.mkdir(mode=0o700, parents=True)
    if not settings["SECRET_KEY"]:
        settings["SECRET_KEY"] = _secret_key(data_dir)

    root = Path(__file__).resolve().parent.parent
    app = Flask(
        __name__,
        template_folder=str(root / "templates"),
        static_folder=str(root / "static"),
    )
    app.config.update(settings)

    db.init_db(settings["DATABASE_URL"], settings["DATA_DIR"])
    db.migrate()

    from .eventlog import connect as connect_eventlog
    from .followups import connect as connect_followups
    from .metrics import connect as connect_metrics
    from .web import init_app as init_web
    from .webhook_feed import connect as connect_webhook_feed

    connect_followups(app.config)
    events.name_providers(analytics.provider_names)
    connect_eventlog()
    connect_metrics()
    connect_webhook_feed(app.config)
    init_web(app)
    return app
