"""Python multiprocessing's side of benches/foundation.rs: the same
workloads, printed as `name value` lines (medians of several runs)."""
import multiprocessing as mp
import statistics
import sys
import time

QUICK = "--quick" in sys.argv
RUNS = 3 if QUICK else 5


def med(f):
    f()
    return statistics.median(f() for _ in range(RUNS))


def lock_ns(n=200_000 if QUICK else 2_000_000):
    lock = mp.Lock()
    t = time.perf_counter()
    for _ in range(n):
        lock.acquire()
        lock.release()
    return (time.perf_counter() - t) * 1e9 / n


def _inc(value, barrier, n):
    barrier.wait()
    for _ in range(n):
        with value.get_lock():
            value.value += 1
    barrier.wait()


def value_mops(n=20_000 if QUICK else 200_000):
    value = mp.Value("q", 0)
    barrier = mp.Barrier(3)
    ps = [mp.Process(target=_inc, args=(value, barrier, n)) for _ in range(2)]
    for p in ps:
        p.start()
    barrier.wait()
    t = time.perf_counter()
    barrier.wait()
    dt = time.perf_counter() - t
    for p in ps:
        p.join()
    assert value.value == 2 * n
    return 2 * n / dt / 1e6


def _pong(ping, pong, n):
    for _ in range(n):
        ping.wait()
        ping.clear()
        pong.set()


def event_us(n=2_000 if QUICK else 10_000):
    ping, pong = mp.Event(), mp.Event()
    p = mp.Process(target=_pong, args=(ping, pong, n + 1))
    p.start()
    ping.set(); pong.wait(); pong.clear()
    t = time.perf_counter()
    for _ in range(n):
        ping.set()
        pong.wait()
        pong.clear()
    dt = time.perf_counter() - t
    p.join()
    return dt * 1e6 / n


def _echo(conn, n):
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def pipe_us(n=2_000 if QUICK else 10_000):
    a, b = mp.Pipe()
    p = mp.Process(target=_echo, args=(b, n + 1))
    p.start()
    a.send_bytes(b"x" * 8); a.recv_bytes()
    t = time.perf_counter()
    for _ in range(n):
        a.send_bytes(b"y" * 8)
        a.recv_bytes()
    dt = time.perf_counter() - t
    p.join()
    return dt * 1e6 / n


def _stream(conn, size, n):
    block = b"z" * size
    for _ in range(n):
        conn.send_bytes(block)


def stream_gbs(size=64 << 10, n=2_000 if QUICK else 20_000):
    rx, tx = mp.Pipe(duplex=False)
    p = mp.Process(target=_stream, args=(tx, size, n))
    p.start()
    buf = bytearray(size)
    rx.recv_bytes_into(buf)
    t = time.perf_counter()
    for _ in range(n - 1):
        rx.recv_bytes_into(buf)
    dt = time.perf_counter() - t
    p.join()
    return size * (n - 1) / dt / 1e9


def _qput(q, start, n):
    start.wait()
    for i in range(n):
        q.put(i.to_bytes(8, "little"))


def _qget(q, start, n):
    start.wait()
    for _ in range(n):
        q.get()


def queue_mps(producers, n=100_000 if QUICK else 400_000):
    q = mp.Queue()
    start = mp.Barrier(2 * producers + 1)
    per = n // producers
    ps = []
    for _ in range(producers):
        ps.append(mp.Process(target=_qput, args=(q, start, per)))
        ps.append(mp.Process(target=_qget, args=(q, start, per)))
    for p in ps:
        p.start()
    start.wait()
    t = time.perf_counter()
    for p in ps:
        p.join()
    return per * producers / (time.perf_counter() - t) / 1e6


def _noop():
    pass


def start_join_us(method, n):
    ctx = mp.get_context(method)
    t = time.perf_counter()
    for _ in range(n):
        p = ctx.Process(target=_noop)
        p.start()
        p.join()
    return (time.perf_counter() - t) * 1e6 / n


def _tiny(x):
    return x


def pool_map_mtps(n=200_000 if QUICK else 1_000_000):
    with mp.Pool(2) as pool:
        pool.map(_tiny, range(1000))
        t = time.perf_counter()
        pool.map(_tiny, range(n))
        return n / (time.perf_counter() - t) / 1e6


def pool_apply_us(n=500 if QUICK else 3000):
    with mp.Pool(2) as pool:
        pool.apply(_tiny, (1,))
        t = time.perf_counter()
        for _ in range(n):
            pool.apply(_tiny, (1,))
        return (time.perf_counter() - t) * 1e6 / n


if __name__ == "__main__":
    mp.set_start_method("fork")
    print("lock_ns", med(lock_ns))
    print("value_mops", med(value_mops))
    print("pipe_us", med(pipe_us))
    print("stream_gbs", med(stream_gbs))
    print("queue11_mps", med(lambda: queue_mps(1)))
    print("queue22_mps", med(lambda: queue_mps(2)))
    print("event_us", med(event_us))
    print("fork_us", med(lambda: start_join_us("fork", 20 if QUICK else 100)))
    print("spawn_us", med(lambda: start_join_us("spawn", 3 if QUICK else 10)))
    print("forkserver_us", med(lambda: start_join_us("forkserver", 10 if QUICK else 50)))
    print("pool_map_mtps", med(pool_map_mtps))
    print("pool_apply_us", med(pool_apply_us))
