"""What the Python peers of the Rust tests share: their end of a
connection, made as their command line says."""
from multiprocessing.connection import Client, Listener


def address(text):
    """host:port (TCP) or a path (Unix)."""
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit():
        return (host, int(port))
    return text


def connect(role, text, key):
    """As a client, connects to `text`; as a listener, listens there, prints
    the address it got (host:port for TCP) and accepts one connection."""
    if role == "client":
        return Client(address(text), authkey=key)
    listener = Listener(address(text), authkey=key)
    shown = listener.address
    if isinstance(shown, tuple):
        shown = f"{shown[0]}:{shown[1]}"
    print(shown, flush=True)
    return listener.accept()
