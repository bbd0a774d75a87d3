"""The appliance's Flask app served for real: waitress on a loopback port in a thread, as
`appliance serve` runs it, for the tests that need a socket (browsers, curl, tracking links)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from waitress import create_server


@contextlib.contextmanager
def served(app, listen: str = "127.0.0.1:0", threads: int = 4) -> Iterator[str]:
    """Serve ``app`` on ``listen`` (``host:port``; port 0 picks a free one); yield its base URL."""
    host, port = listen.rsplit(":", 1)
    server = create_server(app, host=host, port=int(port), threads=threads)

    def run() -> None:
        with contextlib.suppress(OSError):  # the loop's select() on the socket that close() just closed
            server.run()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=5)
