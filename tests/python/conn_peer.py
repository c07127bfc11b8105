"""Python's own multiprocessing.connection, as the peer of the Rust tests.

    conn_peer.py client   ADDRESS KEY [DIGEST]   connects, then echoes each size
    conn_peer.py listener ADDRESS KEY [DIGEST]   listens, prints its address,
                                                 accepts one connection, echoes

With DIGEST (sha256, sha3_384, ...), the handshake is Python 3.12's, whose
challenges name that digest, in place of this interpreter's (3.11's raw
HMAC-MD5): the modern protocol, written out below from its description.

ADDRESS is host:port (TCP) or a path (Unix). For each size in SIZES the peer
receives a message, checks it is pattern(size), and sends it back. It prints
AUTH and exits 3 if the handshake fails, OK when done.
"""
import hmac
import os
import sys
import multiprocessing.connection as mpc
from multiprocessing import AuthenticationError

from peer import connect

CHALLENGE, WELCOME, FAILURE = b"#CHALLENGE#", b"#WELCOME#", b"#FAILURE#"
DIGESTS = {b"md5", b"sha256", b"sha384", b"sha3_256", b"sha3_384"}


def split_digest(message):
    """('', message) for the legacy shapes, else (name, rest) of '{name}rest'."""
    if len(message) in (16, 20):
        return "", message
    end = message.find(b"}", 1, 10)
    if message.startswith(b"{") and end > 0 and message[1:end] in DIGESTS:
        return message[1:end].decode(), message[end + 1 :]
    raise AuthenticationError(f"bad handshake message {message!r}")


def modern(digest):
    def deliver(conn, authkey):
        challenge = b"{" + digest.encode() + b"}" + os.urandom(40)
        conn.send_bytes(CHALLENGE + challenge)
        name, mac = split_digest(conn.recv_bytes(256))
        expected = hmac.new(authkey, challenge, name or "md5").digest()
        if not hmac.compare_digest(expected, mac):
            conn.send_bytes(FAILURE)
            raise AuthenticationError("digest received was wrong")
        conn.send_bytes(WELCOME)

    def answer(conn, authkey):
        message = conn.recv_bytes(256)
        if not message.startswith(CHALLENGE):
            raise AuthenticationError("no challenge")
        challenge = message[len(CHALLENGE) :]
        name, _ = split_digest(challenge)
        mac = hmac.new(authkey, challenge, name or "md5").digest()
        conn.send_bytes(b"{" + name.encode() + b"}" + mac if name else mac)
        if conn.recv_bytes(256) != WELCOME:
            raise AuthenticationError("digest sent was rejected")

    mpc.deliver_challenge, mpc.answer_challenge = deliver, answer

SIZES = [0, 1, 16 * 1024, 16 * 1024 + 1, 1 << 20]


def pattern(n):
    return bytes((i * 7) % 251 for i in range(n))


def echo(conn):
    for n in SIZES:
        message = conn.recv_bytes()
        if message != pattern(n):
            print(f"MISMATCH at size {n}: got {len(message)} bytes", flush=True)
            sys.exit(4)
        conn.send_bytes(message)
    print("OK", flush=True)


def main():
    if len(sys.argv) > 4:
        modern(sys.argv[4])
    try:
        conn = connect(sys.argv[1], sys.argv[2], sys.argv[3].encode())
    except AuthenticationError as e:
        print(f"AUTH {e}", flush=True)
        sys.exit(3)
    echo(conn)


if __name__ == "__main__":
    main()
