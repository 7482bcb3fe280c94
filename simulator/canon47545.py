"""Canon's second SNMP agent: UDP 47545 on the printer's address, answering from a high port.

Real Canon devices run an extra agent on UDP 47545 whose replies leave from another,
high source port. The simulator reproduces it with a relay in front of the device's own
agent: a request to address:47545 is forwarded to the device's agent, and the reply goes
back to the manager from an ephemeral port of the same address (never from 47545), so a
manager that insists on the request's port hears nothing. Enabled per device in the site
description with `extra_agent_port: 47545`.
"""
from __future__ import annotations

import select
import socket
import sys
import threading

MAX_PEERS = 64      # managers remembered at once (one upstream socket each)


class Relay:
    """One extra agent: listens on (address, port), relays to (address, agent_port)."""

    def __init__(self, address: str, port: int, agent_port: int):
        self.address, self.port, self.agent_port = address, port, agent_port
        self.listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.listen.bind((address, port))
        self._peers: dict[tuple, socket.socket] = {}     # manager -> upstream socket
        self._back: dict[socket.socket, tuple] = {}      # upstream socket -> manager
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"canon{port}-{address}", daemon=True)

    def start(self) -> "Relay":
        self._thread.start()
        return self

    def _upstream(self, peer: tuple) -> socket.socket:
        s = self._peers.get(peer)
        if s is None:
            if len(self._peers) >= MAX_PEERS:
                self._close_peers()
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((self.address, 0))      # the high port the replies will come from
            self._peers[peer], self._back[s] = s, peer
        return s

    def _run(self):
        agent = (self.address, self.agent_port)
        while not self._stop.is_set():
            socks = [self.listen] + list(self._back)
            try:
                ready, _, _ = select.select(socks, [], [], 0.2)
            except (OSError, ValueError):
                continue
            for s in ready:
                try:
                    data, src = s.recvfrom(65535)
                except OSError:
                    continue
                if s is self.listen:
                    self._upstream(src).sendto(data, agent)
                elif src == agent and s in self._back:
                    s.sendto(data, self._back[s])

    def _close_peers(self):
        for s in self._back:
            s.close()
        self._peers.clear()
        self._back.clear()

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        self.listen.close()
        self._close_peers()


def start_for(devices) -> list[Relay]:
    """A relay for every device whose spec asks for `extra_agent_port`. A port already
    taken (another simulation on the same address) is reported on stderr, not fatal:
    that device then simply has no extra agent, like most Canon models."""
    relays = []
    for d in devices:
        port = d.spec.get("extra_agent_port")
        if not port:
            continue
        try:
            relays.append(Relay(d.address, int(port), d.port).start())
        except OSError as exc:
            print(f"simulator: {d.name}: cannot bind UDP {d.address}:{port} for its extra agent: "
                  f"{exc.strerror}", file=sys.stderr)
    return relays
