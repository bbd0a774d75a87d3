"""The only place that starts threads and binds ports (DESIGN §1)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import logging
import logging.handlers
import os
import queue as queue_module
import resource
import signal
import ssl
import sys
import threading

from cheroot.server import HTTPConnection
from cheroot.ssl.builtin import BuiltinSSLAdapter
from flask import Flask

from . import backup, certificates, checklist, db, domains, eventlog, intake, metrics, queue, tls
from .listeners import Listener, parse_listeners
from .smtp.context import ServerContext
from .smtp.hooks import Handler
from .smtp.protocol import ApplianceSMTP

log = logging.getLogger(__name__)


class SmtpService:
    """All SMTP listeners on one asyncio loop in one thread, plus the group-commit writer."""

    def __init__(self, settings: dict, tls_context: ssl.SSLContext, on_committed=None):
        self.settings = settings
        self.listeners = parse_listeners(settings["SMTP_LISTEN"])  # bad specs fail here, not in the thread
        self.tls_context = tls_context
        self.committer = intake.GroupCommitter(settings["GROUP_COMMIT_MAX"], on_committed)
        self.ctx = ServerContext.build(settings, self.committer)
        self.handler = Handler(self.ctx)  # the hooks keep no state of their own: one for every connection
        self.loop: asyncio.AbstractEventLoop | None = None
        self.servers: list[asyncio.AbstractServer] = []
        self.bound: list[tuple[Listener, list[tuple]]] = []  # listener, socket addresses
        self.failed: list[tuple[Listener, str]] = []
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the writer and the loop thread; return once every listener is bound or skipped."""
        self.committer.start()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="smtp-loop", daemon=True)
        self._thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        # asyncio's own loop, not uvloop: uvloop spends less CPU per message but makes its socket
        # writes holding the GIL, while asyncio's release it, so the writer thread commits meanwhile
        # (bench/intake.py plain: 1,550-1,640 against 1,430-1,510 msg/s; docs/benchmarks.md).
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._bind_all())
        finally:
            ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    async def _bind_all(self) -> None:
        for listener in self.listeners:
            implicit = listener.mode == "tls"

            def factory(implicit=implicit, listener=listener):
                return ApplianceSMTP(
                    self.handler,
                    self.ctx,
                    implicit_tls=implicit,
                    mx=listener.mx,
                    tls_context=self.tls_context,
                    loop=self.loop,
                )

            addresses, failures = [], {}  # failures: reason -> the ports that failed for it
            for port in listener.ports:
                try:
                    server = await self.loop.create_server(
                        factory,
                        host=listener.host,
                        port=port,
                        ssl=self.tls_context if implicit else None,
                        reuse_address=True,
                        # A handshake never finished is dropped as soon as a silent client would be.
                        ssl_handshake_timeout=self.settings["SMTP_FIRST_COMMAND_TIMEOUT"] if implicit else None,
                    )
                except OSError as exc:
                    reason = os.strerror(exc.errno) if exc.errno else str(exc)
                    if exc.errno == errno.EACCES and port < 1024:
                        reason += " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                    failures.setdefault(reason, []).append(port)
                    continue
                self.servers.append(server)
                addresses += [s.getsockname() for s in server.sockets]
            if addresses:
                self.bound.append((listener, addresses))
            for reason, ports in failures.items():
                if listener.last:  # one line for the range, naming the ports that failed
                    reason = f"{reason} (port{'s' if len(ports) > 1 else ''} {', '.join(map(str, ports))})"
                self.failed.append((listener, reason))
                log.warning("SMTP %s not listening: %s", listener, reason)

    def stop(self) -> None:
        if self.loop and self._thread:

            async def close_all():
                for server in self.servers:
                    server.close()
                    await server.wait_closed()

            fut = asyncio.run_coroutine_threadsafe(close_all(), self.loop)
            with contextlib.suppress(Exception):  # shutting down regardless
                fut.result(timeout=5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self._thread = None
        self.ctx.executor.shutdown(wait=False, cancel_futures=True)
        self.committer.stop()


class _QuietLoginData(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in str(record.msg)


class _Handoff(logging.handlers.QueueHandler):
    """Hands each record to the thread that writes the lines, to be formatted there: the logfmt
    formatting is most of a line's cost, and the database writer thread logs every committed event."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if record.args:  # the message as its arguments are now (an event line is a fresh dict, no args)
            record.msg, record.args = record.getMessage(), None
        return record


def configure_logging() -> logging.handlers.QueueListener:
    """logfmt lines on stderr, journald's way when systemd runs us (appliance/eventlog.py); return the
    thread that writes them (stop it last).

    A line is formatted and written by that thread, so neither the formatting nor a slow reader of
    stderr (journald under load) holds up the thread that logs it (the writer thread logs every
    committed event)."""
    line = eventlog.LineFormatter(journald=eventlog.under_journald(sys.stderr))
    handoff = _Handoff(queue_module.SimpleQueue())
    output = logging.StreamHandler()
    output.setFormatter(line)
    writer = logging.handlers.QueueListener(handoff.queue, output)
    logging.basicConfig(level=logging.INFO, handlers=[handoff])
    # aiosmtpd logs every command at INFO; keep its warnings only.
    mail_log = logging.getLogger("mail.log")
    mail_log.setLevel(logging.WARNING)
    mail_log.addFilter(_QuietLoginData())
    writer.start()
    return writer


def start_smtp(
    settings: dict, on_committed=None, live: tls.LiveContext | None = None
) -> tuple[SmtpService, tls.TlsFiles]:
    """Make sure TLS material exists, then start the SMTP listeners, which serve ``live``'s context
    (the certificate files as they are now, replaced files included)."""
    _allow_open_files(parse_listeners(settings["SMTP_LISTEN"]))
    if live is None:
        live = tls.LiveContext(tls.ensure(settings))
    service = SmtpService(settings, live.context, on_committed)
    service.start()
    return service, live.files


def _allow_open_files(listeners: list[Listener]) -> None:
    """Raise the soft limit on open files by two per listening port (IPv4 and IPv6), up to the hard
    limit, so that a port range leaves the connections the room they had (systemd's soft limit is 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = soft + 2 * sum(len(listener.ports) for listener in listeners)
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class QueueService:
    """The embedded Huey consumer (delivery worker threads) and the periodic sweeper thread."""

    def __init__(self, settings: dict):
        self.rt = queue.init(settings)
        self.consumer = queue.consumer(self.rt)
        self.sweeper = queue.Sweeper(self.rt)
        self._thread: threading.Thread | None = None
        # Enqueueing happens beside the writer, which goes on to its next commit at once; mail
        # committed but not yet enqueued when the process dies is found by the start-up sweep.
        self._enqueuer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="enqueue")

    def on_committed(self, message_ids: list[str]) -> None:
        """Intake's post-commit hook (writer thread): hand the new deliveries to the workers."""
        self._enqueuer.submit(self._enqueue, message_ids)

    def _enqueue(self, message_ids: list[str]) -> None:
        try:
            db.database.connect(reuse_if_open=True)
            queue.enqueue_messages(self.rt, message_ids)
        except Exception:  # the rows are committed: the periodic sweep enqueues them instead
            log.exception("could not enqueue %d new message(s)", len(message_ids))

    def start(self) -> None:
        """Re-enqueue what a previous run left (start-up sweep), then start workers and sweeper."""
        with db.database.connection_context():
            queue.sweep(self.rt, startup=True)
            queue.sweep_webhooks(self.rt, startup=True)
        self.consumer.start()
        self._thread = threading.Thread(target=self.sweeper.run, name="queue-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._enqueuer.shutdown(wait=True)  # what intake committed last is enqueued before we go
        self.sweeper.stopping.set()
        if self._thread:  # started: the consumer and the sweeper run in this process
            self.consumer.stop(graceful=True)
            self._thread.join(timeout=5)
            self._thread = None


ROLES = ("all", "smtp", "web", "worker")


def serve(app: Flask, role: str = "all") -> None:
    """Run this process's part: everything (``all``), or for the scale-out mode of DESIGN §5 only
    the SMTP front end (``smtp``), the dashboard (``web``) or the delivery workers (``worker``)."""
    log_writer = configure_logging()
    settings = app.config
    try:
        # Held while this process runs, so that `appliance restore` refuses to swap the data under it.
        with backup.serving(settings["DATA_DIR"]):
            _serve(app, settings, role)
    finally:
        log_writer.stop()


def _serve(app: Flask, settings, role: str) -> None:
    # waitress waits in select() unless told to poll, and select() cannot watch a descriptor above
    # 1023: with many SMTP connections or a port range the dashboard would die.
    from waitress import create_server

    from . import admins

    runs = {part: role in ("all", part) for part in ("smtp", "web", "worker")}
    first_admin = None
    if runs["web"]:
        with app.app_context():
            first_admin = admins.ensure_first_admin()
    # Every role enqueues (intake's hook, admin actions); only a worker role runs the consumer.
    workers = QueueService(settings)
    checker = domains.Checker(settings)  # re-checks sending domains' DNS every DOMAIN_CHECK_INTERVAL
    if runs["worker"]:
        workers.start()
        threading.Thread(target=checker.run, name="domain-checker", daemon=True).start()
    service = files = live = None
    https = runs["web"] and bool(settings["WEB_TLS_LISTEN"])
    if runs["smtp"] or https:  # one certificate, followed on disk, for SMTP and HTTPS alike
        live = tls.LiveContext(tls.ensure(settings))
        files = live.files
    if runs["smtp"]:
        service, files = start_smtp(settings, workers.on_committed, live)
    acme = start_acme(settings) if live is not None and certificates.enabled(settings) else None

    web, web_url, secure = None, f"not run in this process (--role {role})", None
    if runs["web"]:
        host, _, port = settings["WEB_LISTEN"].rpartition(":")
        web_url = f"http://{settings['WEB_LISTEN']}/"
        try:
            web = create_server(
                app, host=host.strip("[]") or "127.0.0.1", port=int(port), threads=8, asyncore_use_poll=True
            )
        except OSError as exc:  # like an SMTP port: reported and skipped, the rest keeps working
            web_url = f"NOT listening on {settings['WEB_LISTEN']}: {os.strerror(exc.errno) if exc.errno else exc}"
        if https:
            secure, https_url = start_https(app, settings["WEB_TLS_LISTEN"], live)
            web_url += f", {https_url}"
    if not runs["web"] and settings["METRICS_LISTEN"]:
        _serve_metrics(settings, create_server)
    # SIGTERM (systemd, docker stop) ends the process like Ctrl-C: listeners close, workers stop.
    # Installed before the banner: whoever reads the banner may stop us at once.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        with app.app_context():
            todo = tuple(step.todo for step in checklist.steps(settings) if not step.done)
        banner = startup_banner(
            settings, service, files, first_admin, web_url=web_url, workers=runs["worker"], acme=acme, todo=todo
        )
        print(banner, flush=True)
        if web is not None:
            web.run()
        else:
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        checker.stopping.set()
        if acme is not None:
            acme.stop()
        if secure is not None:
            secure.stop()
        if service is not None:
            service.stop()
        workers.stop()


class _LiveTlsAdapter(BuiltinSSLAdapter):
    """cheroot's TLS adapter over the one live context (tls.LiveContext), so that HTTPS follows the
    certificate files as SMTP does, with the handshake moved off cheroot's accepting thread.

    cheroot shakes hands in the thread that accepts every connection, so one client that connects and
    sends nothing would hold up all others for the socket timeout. Here the socket is only wrapped;
    the worker thread serving the connection shakes hands (``_HandshakeFirst``)."""

    def __init__(self, context: ssl.SSLContext):  # not the parent's: it would load the files itself
        self.certificate = self.private_key = self.certificate_chain = self.ciphers = None
        self.private_key_password = None
        self._server_env = {}
        self.context = context

    def wrap(self, sock):
        wrapped = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return wrapped, {"wsgi.url_scheme": "https", "HTTPS": "on"}


class _HandshakeFirst(HTTPConnection):
    """A connection whose TLS handshake is made by its worker thread before the first request; a
    failed one (plain HTTP, a client that gave up or distrusts the certificate) closes it with a log
    line, not a traceback."""

    shaken = False

    def communicate(self):
        if not self.shaken:
            try:
                self.socket.do_handshake()
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                log.info("HTTPS handshake with %s failed: %s", self.remote_addr, exc)
                return False
            self.shaken = True
        return super().communicate()


def start_https(app: Flask, spec: str, live: tls.LiveContext):
    """Serve the dashboard over HTTPS on ``spec`` (``HOST:PORT``) with cheroot, in its own threads;
    return the server (None when the address cannot be bound) and what the banner says of it."""
    from cheroot import wsgi

    host, _, port = spec.rpartition(":")
    server = wsgi.Server(
        (host.strip("[]") or "127.0.0.1", int(port)), app, numthreads=8, server_name=app.config["HOSTNAME"]
    )
    server.ssl_adapter = _LiveTlsAdapter(live.context)
    server.ConnectionClass = _HandshakeFirst
    try:
        server.prepare()  # binds, so that a port in use is reported like WEB_LISTEN's
    except OSError as exc:
        return None, f"HTTPS NOT listening on {spec}: {os.strerror(exc.errno) if exc.errno else exc}"
    threading.Thread(target=server.serve, name="https", daemon=True).start()
    return server, f"https://{spec}/"


class AcmeService:
    """ACME in a process that serves TLS: the plain-HTTP listener of ACME_HTTP_LISTEN (the CA's
    challenges, redirects to HTTPS) and the thread that renews the certificate when it is due."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.renewer = certificates.Renewer(settings)
        self.http = None
        self.failed = ""  # why ACME_HTTP_LISTEN is not listening ("" when it is)

    def start(self) -> AcmeService:
        self.http, self.failed = bind_challenge_listener(self.settings)
        if self.http is not None:
            self._http_thread = _run(self.http)
        threading.Thread(target=self.renewer.run, name="acme-renewer", daemon=True).start()
        return self

    def stop(self) -> None:
        self.renewer.stopping.set()
        if self.http is not None:
            _close(self.http, self._http_thread)


def start_acme(settings: dict) -> AcmeService:
    return AcmeService(settings).start()


def bind_challenge_listener(settings: dict):
    """Bind ACME_HTTP_LISTEN with waitress (not started); return (server, "") or (None, why not)."""
    from waitress import create_server

    try:
        server = create_server(
            certificates.challenge_app(settings),
            listen=certificates.listen_spec(settings),
            threads=4,
            asyncore_use_poll=True,
            ident="appliance",
        )
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno == errno.EACCES:
            reason += " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        log.warning("ACME_HTTP_LISTEN %s NOT listening: %s", settings["ACME_HTTP_LISTEN"], reason)
        return None, reason
    return server, ""


@contextlib.contextmanager
def challenge_listener(settings: dict):
    """ACME_HTTP_LISTEN for a command (`appliance tls renew`) while it orders: served here when the
    port is free; when it is taken (the running appliance serves the same DATA_DIR/acme/challenges)
    nothing is bound. Yields why it is not served here ("" when it is)."""
    server, failed = bind_challenge_listener(settings)
    if server is None:
        yield failed
        return
    thread = _run(server)
    try:
        yield ""
    finally:
        _close(server, thread)


def _run(server) -> threading.Thread:
    thread = threading.Thread(target=server.run, name="acme-http", daemon=True)
    thread.start()
    return thread


def _close(server, thread: threading.Thread) -> None:
    """Stop a waitress server run in ``thread``: its task threads, its sockets, then its loop, which
    holds the listening socket until its poll() returns (so the port is free once this returns)."""
    server.task_dispatcher.shutdown()
    server.close()
    thread.join(timeout=5)


def _serve_metrics(settings, create_server) -> None:
    """Serve this process's /metrics on METRICS_LISTEN (a process without the dashboard's /metrics)."""
    host, _, port = settings["METRICS_LISTEN"].rpartition(":")
    try:
        server = create_server(
            metrics.wsgi_app(settings),
            host=host.strip("[]") or "127.0.0.1",
            port=int(port),
            threads=2,
            asyncore_use_poll=True,
        )
    except OSError as exc:  # like an SMTP port: reported and skipped
        log.warning(
            "metrics NOT served on %s: %s", settings["METRICS_LISTEN"], os.strerror(exc.errno) if exc.errno else exc
        )
        return
    threading.Thread(target=server.run, name="metrics", daemon=True).start()
    log.info("metrics served on http://%s/metrics", settings["METRICS_LISTEN"])


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def startup_banner(
    settings,
    service: SmtpService | None,
    files: tls.TlsFiles | None,
    first_admin,
    web_url: str,
    workers: bool = True,
    acme: AcmeService | None = None,
    todo: tuple[str, ...] = (),
) -> str:
    """Say what listens where, what failed, and what to do next."""
    lines = [f"appliance {settings['HOSTNAME']} — data in {settings['DATA_DIR']}"]
    if service is None:
        lines.append("  SMTP: not run in this process")
    else:
        for listener, addrs in service.bound:
            # A range is shown once per address, not once per port.
            shown = ", ".join(dict.fromkeys(f"{a[0]}:{listener.port_text}" for a in addrs))
            lines.append(
                f"  SMTP {listener.mode:<8} listening on {shown}"
                + ("  (MX: accepts mail for local domains)" if listener.mx else "")
            )
        for listener, reason in service.failed:
            lines.append(f"  SMTP {listener} NOT listening: {reason}")
    lines.append(f"  delivery workers: {settings['WORKERS'] if workers else 'not run in this process'}")
    lines.append(f"  dashboard: {web_url}")
    if acme is not None:
        http = settings["ACME_HTTP_LISTEN"]
        lines.append(
            f"  TLS: ACME certificate for {settings['HOSTNAME']} from {settings['ACME_DIRECTORY']}, renewed by itself"
            f" ({files.cert}; appliance tls status)"
        )
        if acme.failed:
            lines.append(f"  ACME HTTP NOT listening on {http}: {acme.failed} (the CA cannot validate HOSTNAME)")
        else:
            lines.append(f"  ACME HTTP listening on {http} (challenges; everything else redirects to HTTPS)")
    elif files is not None:
        if files.ca:
            lines.append(
                f"  TLS: certificate for {settings['HOSTNAME']} from the local CA {files.ca}"
                " (tell clients to trust it, or set TLS_CERT/TLS_KEY)"
            )
        else:
            lines.append(f"  TLS: {files.cert}")
    # The CLI reads ./data unless told: this line makes it read this process's data from any folder.
    lines.append(
        f'  the CLI from any folder: export PATH="{os.path.dirname(sys.executable)}:$PATH" '
        f'APPLIANCE_DATA_DIR="{settings["DATA_DIR"]}"'
    )
    # What is still to do (appliance/checklist.py), so that the hints change as the owner goes.
    lines += [f"  next: {step}" for step in todo] or [
        "  set-up: every first step is done; the overview shows the traffic"
    ]
    # Last, where a terminal leaves it in view: the one line that is never shown again.
    if first_admin:
        email, password = first_admin
        lines.append(f"  first admin login (shown once): {email} / {password}")
    else:
        lines.append("  admins: the first login was shown at the first start; appliance admin create EMAIL adds one")
    return "\n".join(lines)
