"""A counting UDP relay on loopback, run as its own process by the SNMP benchmarks.

Usage: python _udpproxy.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT
Relays each client's datagrams to the target through a socket of its own (so replies
find their way back) and counts both directions. Prints "ready", and on SIGTERM one
JSON line: requests, bytes_out (client -> agent), replies, bytes_in (agent -> client).
"""
import json
import selectors
import signal
import socket
import sys


def main():
    lhost, lport, thost, tport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    sel = selectors.DefaultSelector()
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind((lhost, lport))
    front.setblocking(False)
    sel.register(front, selectors.EVENT_READ, None)
    ups = {}
    st = {"requests": 0, "bytes_out": 0, "replies": 0, "bytes_in": 0}
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    print("ready", flush=True)
    while not stop:
        for key, _ in sel.select(0.2):
            sock, client = key.fileobj, key.data
            while True:
                try:
                    data, addr = sock.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    break
                if client is None:
                    up = ups.get(addr)
                    if up is None:
                        up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        up.setblocking(False)
                        up.connect((thost, tport))
                        sel.register(up, selectors.EVENT_READ, addr)
                        ups[addr] = up
                    st["requests"] += 1
                    st["bytes_out"] += len(data)
                    up.send(data)
                else:
                    st["replies"] += 1
                    st["bytes_in"] += len(data)
                    front.sendto(data, client)
    print(json.dumps(st), flush=True)


if __name__ == "__main__":
    main()
