"""Python's own Connection.send()/recv() (pickles), as the peer of the Rust
tests: an unmodified Python program's side of a conversation.

    pickle_peer.py client   ADDRESS KEY   connects, then talks
    pickle_peer.py listener ADDRESS KEY   listens, prints its address,
                                          accepts one connection, talks

The conversation: send OBJ twice (nested dicts, lists, tuples, str, bytes,
int, float, bool, None); receive the reply and check it is REPLY; send a
class instance (which the Rust side must refuse and go on); send "still
here"; receive "bye". Prints OK and exits 0, or what differed and exits 4.
"""
import sys

from peer import connect

OBJ = {
    "name": "multiproc",
    "nums": [1, 2, 3],
    "pair": (1.5, None),
    "ok": True,
    "nested": {"deep": [{"x": -7}, {"x": 2**40}]},
    "raw": b"\x00\xffbytes",
}
REPLY = {
    "got": "multiproc",
    "sum": 6,
    "flags": (True, None),
    "items": [("a", 0.5), ("b", -2.0)],
    "raw": b"\x01\x02",
}


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y


def expect(got, want, what):
    if got != want:
        print(f"MISMATCH {what}: got {got!r}, want {want!r}", flush=True)
        sys.exit(4)


def talk(conn):
    conn.send(OBJ)
    conn.send(OBJ)
    expect(conn.recv(), REPLY, "reply")
    conn.send(Point(1, 2))
    conn.send("still here")
    expect(conn.recv(), "bye", "last word")
    print("OK", flush=True)


def main():
    talk(connect(sys.argv[1], sys.argv[2], sys.argv[3].encode()))


if __name__ == "__main__":
    main()
