"""Python's own multiprocessing.connection, as the peer of the Rust tests.

    conn_peer.py client   ADDRESS KEY   connects, then echoes each size
    conn_peer.py listener ADDRESS KEY   listens, prints its address, accepts
                                        one connection, then echoes

ADDRESS is host:port (TCP) or a path (Unix). For each size in SIZES the peer
receives a message, checks it is pattern(size), and sends it back. It prints
AUTH and exits 3 if the handshake fails, OK when done.
"""
import sys
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener

SIZES = [0, 1, 16 * 1024, 16 * 1024 + 1, 1 << 20]


def pattern(n):
    return bytes((i * 7) % 251 for i in range(n))


def address(text):
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit():
        return (host, int(port))
    return text


def echo(conn):
    for n in SIZES:
        message = conn.recv_bytes()
        if message != pattern(n):
            print(f"MISMATCH at size {n}: got {len(message)} bytes", flush=True)
            sys.exit(4)
        conn.send_bytes(message)
    print("OK", flush=True)


def main():
    role, addr, key = sys.argv[1], address(sys.argv[2]), sys.argv[3].encode()
    try:
        if role == "client":
            conn = Client(addr, authkey=key)
        else:
            listener = Listener(addr, authkey=key)
            shown = listener.address
            if isinstance(shown, tuple):
                shown = f"{shown[0]}:{shown[1]}"
            print(shown, flush=True)
            conn = listener.accept()
    except AuthenticationError as e:
        print(f"AUTH {e}", flush=True)
        sys.exit(3)
    echo(conn)


if __name__ == "__main__":
    main()
