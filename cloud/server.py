"""Running the service: uvicorn servers, one per endpoint, each on its own socket and certificate.

- `Receiver`: one endpoint served from a background thread of this process (the simulator
  and tests); stop() closes its socket and cuts its connections, start() takes the same port.
- `Cloud`: liberty + rescue over one store, as the simulator runs them.
- `serve(config)`: the service on its own (`fleetbox-cloud serve`): the parent migrates the
  database, binds every listener once and keeps `workers` processes serving all of them;
  a worker that dies is replaced, SIGTERM/SIGINT stop them all.
"""
import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time

import uvicorn

from cloud.app import Limits, create_app
from cloud.keys import manifest_keys
from cloud.logs import event
from cloud.store import Store

log = logging.getLogger("fleetbox.cloud")
# The service's own life (listening, workers starting and dying, stopping): logged whatever the level.
life = logging.getLogger("fleetbox.cloud.service")
# TLS 1.2+ with forward secrecy and AEAD (and TLS 1.3's own suites); the box's mbedTLS speaks these.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to its owner: several run in one process."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def uvicorn_config(app, cert, key, limits, client_ca=None, log_level="warning"):
    extra = {}
    if client_ca:
        # the provisioning route reads the box's certificate from the request scope; the same HTTP
        # parser as every other listener (httptools: h11's pure Python cost this listener's ingest a quarter)
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
        from cloud.provision import client_cert_protocol
        extra["http"] = client_cert_protocol(HttpToolsProtocol)
    return uvicorn.Config(
        app, lifespan="off", access_log=False, log_config=None, log_level=log_level,
        server_header=False, date_header=False, proxy_headers=False,
        ssl_certfile=cert, ssl_keyfile=key, ssl_ciphers=CIPHERS,
        # client certificates where an endpoint wants them (provisioning): optional, checked against client_ca
        ssl_ca_certs=client_ca, ssl_cert_reqs=1 if client_ca else 0,
        timeout_keep_alive=limits.keep_alive_s, timeout_graceful_shutdown=5,
        h11_max_incomplete_event_size=16384, **extra)


GC_YOUNG = 50000    # allocations between collections of the youngest generation (Python's default: 700)


def tune_gc():
    """Fewer, cheaper cyclic collections for a worker: a group of uploads holds thousands of decoded
    containers at once, and at the default threshold the collector scanned them over and over (a
    quarter of the handler's CPU, bench/cloud/store_upload.py). What the worker set up before serving
    (modules, tables, the app) is frozen out of the collections; refcounting still frees the rest."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG, 20, 100)


def bind(address, port):
    """A listening TCP socket; port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


class Receiver:
    """One HTTPS endpoint (liberty or rescue) served from a background thread."""

    def __init__(self, name, address, port, cert, key, store, keys, window=86400, limits=None,
                 provisioning=None, client_ca=None):
        self.name, self.address, self.port = name, address, port
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self.app = create_app(name, store, keys, window, limits, provisioning)
        self.limits = limits or Limits()
        self.server = self.thread = None

    def start(self):
        sock = bind(self.address, self.port)
        self.port = sock.getsockname()[1]    # port 0 picks a free one, kept across restarts
        self.server = _Server(uvicorn_config(self.app, self.cert, self.key, self.limits, self.client_ca))
        self.thread = threading.Thread(target=self._run, args=(self.server, sock), name=self.name, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            raise RuntimeError("%s did not start on %s:%d" % (self.name, self.address, self.port))
        event(life, logging.INFO, "listening", "%s listening on https://%s:%d", self.name, self.address, self.port,
              endpoint=self.name, address=self.address, port=self.port)
        return self

    @staticmethod
    def _run(server, sock):
        server.run(sockets=[sock])
        sock.close()

    @property
    def running(self):
        return self.server is not None

    def stop(self):
        if self.server:
            self.server.should_exit = self.server.force_exit = True
            self.thread.join(15)
            self.server = self.thread = None


class Cloud:
    """liberty + rescue over one store, as the simulator runs them.

    store_path: a database URL or a SQLite file path."""

    def __init__(self, state_dir, store_path, manifest_path, endpoints, ca, window=86400, limits=None,
                 factory=None):
        """factory: (factory manifest path or paths, factory CA PEM path) to provision boxes."""
        from simulator import pki
        self.store = Store(store_path)
        keys = manifest_keys(manifest_path)
        self.provisioning = client_ca = None
        if factory:
            from cloud.provision import Provisioning, either_keys
            self.provisioning = Provisioning(self.store, factory[0])
            keys, client_ca = either_keys(self.provisioning.keys, keys), factory[1]
        self.receivers = {}
        for name, (address, port) in endpoints.items():
            hostname = "%s.fleetbox.test" % name
            cert, key = pki.ensure_server(state_dir, name, hostname, [address], ca)
            self.receivers[name] = Receiver(name, address, port, cert, key, self.store, keys, window, limits,
                                            self.provisioning, client_ca)

    def start(self):
        for r in self.receivers.values():
            r.start()
        return self

    def stop(self):
        for r in self.receivers.values():
            r.stop()
        self.store.close()

    def box_config(self, name):
        r = self.receivers[name]
        return {"name": name, "url": "https://%s.fleetbox.test:%d/v1/ingest" % (name, r.port), "resolve": r.address}


# -- the service on its own

def _worker(config, sockets):
    """One worker process: every listener on its inherited socket, one store, one event loop."""
    from cloud import logs
    logs.setup(config.log_level)
    store = Store(config.database, migrate=False, pool_size=config.pool_size)
    keys = manifest_keys(config.manifest)
    provisioning = None
    if config.factory_manifests:
        from cloud.provision import Provisioning, either_keys
        provisioning = Provisioning(store, config.factory_manifests)
        keys = either_keys(provisioning.keys, keys)
    servers = []
    for lst, sock in zip(config.listeners, sockets):
        # every listener guards ingest (quarantine); boxes provision where client_ca asks for their certificate
        app = create_app(lst.name, store, keys, config.window, config.limits, provisioning)
        app.state.endpoint.group_size(config.ingest_group)
        servers.append((_Server(uvicorn_config(app, lst.cert, lst.key, config.limits, lst.client_ca)), sock))

    async def main():
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: [setattr(s, "should_exit", True) for s, _ in servers])
        await asyncio.gather(*(s.serve(sockets=[sock]) for s, sock in servers))

    tune_gc()
    event(life, logging.INFO, "worker-start", "worker %d serving %s", os.getpid(),
          ", ".join(lst.name for lst in config.listeners), pid=os.getpid())
    try:
        import uvloop
        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    store.close()


def serve(config):
    """Run the service until SIGTERM/SIGINT; returns the exit status."""
    store = Store(config.database, migrate=True, pool_size=1)   # migrations run here, once
    store.close()
    sockets = [bind(lst.address, lst.port) for lst in config.listeners]
    for lst, sock in zip(config.listeners, sockets):
        event(life, logging.INFO, "listening", "%s listening on https://%s:%d", lst.name, lst.address,
              sock.getsockname()[1], endpoint=lst.name, address=lst.address, port=sock.getsockname()[1])
    ctx = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())

    def spawn():
        p = ctx.Process(target=_worker, args=(config, sockets), daemon=False)
        p.start()
        return p

    workers = [spawn() for _ in range(config.workers)]
    if (getattr(config, "smtp", None) or {}).get("every_s"):
        from cloud import notify
        notify.start(config.database, config.smtp, stopping)
    try:
        while not stopping.wait(0.5):
            for i, p in enumerate(workers):
                if not p.is_alive():
                    event(life, logging.ERROR, "worker-died", "worker %d exited with %s; starting another", p.pid,
                          p.exitcode, pid=p.pid, exitcode=p.exitcode)
                    workers[i] = spawn()
    finally:
        for p in workers:
            if p.is_alive():
                p.terminate()
        for p in workers:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
        for sock in sockets:
            sock.close()
        event(life, logging.INFO, "stopped", "service stopped")
    return 0
