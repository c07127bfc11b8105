"""Python multiprocessing's side of the multiproc-bench suite.

    python3 benches/python_suite.py WORKLOAD quick|full

runs one measured round of WORKLOAD (after a short warm-up inside the same
interpreter where one is cheap) and prints one number, in the unit the Rust
side prints for that workload. The Rust driver calls this once per run, so
the sides take turns and the machine's drift hits all of them alike.
"""
import multiprocessing as mp
import sys
import time

QUICK = len(sys.argv) > 2 and sys.argv[2] == "quick"


def n(quick, full):
    return quick if QUICK else full


def lock():
    ops = n(200_000, 2_000_000)
    lk = mp.Lock()
    t = time.perf_counter()
    for _ in range(ops):
        lk.acquire()
        lk.release()
    return (time.perf_counter() - t) * 1e9 / ops


def _inc(value, barrier, ops):
    barrier.wait()
    for _ in range(ops):
        with value.get_lock():
            value.value += 1
    barrier.wait()


def value2():
    ops = n(20_000, 200_000)
    value = mp.Value("q", 0)
    barrier = mp.Barrier(3)
    ps = [mp.Process(target=_inc, args=(value, barrier, ops)) for _ in range(2)]
    for p in ps:
        p.start()
    barrier.wait()
    t = time.perf_counter()
    barrier.wait()
    dt = time.perf_counter() - t
    for p in ps:
        p.join()
    return 2 * ops / dt / 1e6


def _pong(ping, pong, rounds):
    for _ in range(rounds):
        ping.wait()
        ping.clear()
        pong.set()


def event_rt():
    rounds = n(500, 5_000)
    ping, pong = mp.Event(), mp.Event()
    p = mp.Process(target=_pong, args=(ping, pong, rounds + 1))
    p.start()
    ping.set()
    pong.wait()
    pong.clear()
    t = time.perf_counter()
    for _ in range(rounds):
        ping.set()
        pong.wait()
        pong.clear()
    dt = time.perf_counter() - t
    p.join()
    return dt * 1e6 / rounds


def _echo(conn, rounds):
    for _ in range(rounds):
        conn.send_bytes(conn.recv_bytes())


def pipe_rt():
    rounds = n(2_000, 20_000)
    a, b = mp.Pipe()
    p = mp.Process(target=_echo, args=(b, rounds + 1))
    p.start()
    return _timed_rt(a, p, rounds)


def _timed_rt(a, p, rounds):
    """One warm-up, then rounds timed 8-byte round trips with _echo in p."""
    a.send_bytes(b"\0" * 8)
    a.recv_bytes()
    t = time.perf_counter()
    for _ in range(rounds):
        a.send_bytes(b"\1" * 8)
        a.recv_bytes()
    dt = time.perf_counter() - t
    p.join()
    return dt * 1e6 / rounds


def _conn_echo(address, rounds):
    from multiprocessing.connection import Client

    _echo(Client(address, authkey=b"bench"), rounds)


def conn_rt():
    import os
    import tempfile
    from multiprocessing.connection import Listener

    rounds = n(2_000, 20_000)
    address = os.path.join(tempfile.mkdtemp(), "bench.sock")
    listener = Listener(address, family="AF_UNIX", authkey=b"bench")
    p = mp.Process(target=_conn_echo, args=(address, rounds + 1))
    p.start()
    rt = _timed_rt(listener.accept(), p, rounds)
    listener.close()
    return rt


def manager_dict():
    ops = n(2_000, 20_000)
    with mp.Manager() as m:
        d = m.dict()
        d[0] = 0
        d[0]
        t = time.perf_counter()
        for i in range(ops // 2):
            d[i % 64] = i
            d[i % 64]
        dt = time.perf_counter() - t
    return dt * 1e6 / (ops // 2 * 2)


def _stream(conn, size, count):
    block = b"\7" * size
    for _ in range(count):
        conn.send_bytes(block)


def _stream_rate(size, count):
    rx, tx = mp.Pipe(duplex=False)
    p = mp.Process(target=_stream, args=(tx, size, count))
    p.start()
    buf = bytearray(size)
    rx.recv_bytes_into(buf)
    t = time.perf_counter()
    for _ in range(count - 1):
        rx.recv_bytes_into(buf)
    dt = time.perf_counter() - t
    p.join()
    return (count - 1) / dt


def stream_8():
    return _stream_rate(8, n(50_000, 500_000)) / 1e6


def stream_64k():
    return _stream_rate(64 << 10, n(2_000, 20_000)) * (64 << 10) / 1e9


def stream_16m():
    return _stream_rate(16 << 20, n(8, 40)) * (16 << 20) / 1e9


def _qput(q, start, count, size):
    start.wait()
    for i in range(count):
        q.put(i.to_bytes(8, "little") if size == 8 else bytes(size))


def _qget(q, start, count):
    start.wait()
    for _ in range(count):
        q.get()


def _queue(producers, size, total):
    q = mp.Queue()
    start = mp.Barrier(2 * producers + 1)
    per = total // producers
    ps = []
    for _ in range(producers):
        ps.append(mp.Process(target=_qput, args=(q, start, per, size)))
        ps.append(mp.Process(target=_qget, args=(q, start, per)))
    for p in ps:
        p.start()
    start.wait()
    t = time.perf_counter()
    for p in ps:
        p.join()
    return per * producers / (time.perf_counter() - t) / 1e6


def queue11_8():
    return _queue(1, 8, n(50_000, 400_000))


def queue22_8():
    return _queue(2, 8, n(50_000, 400_000))


def queue11_4k():
    return _queue(1, 4096, n(20_000, 100_000))


def queue22_4k():
    return _queue(2, 4096, n(20_000, 100_000))


def _noop():
    pass


def _start_join(method, count):
    ctx = mp.get_context(method)
    t = time.perf_counter()
    for _ in range(count):
        p = ctx.Process(target=_noop)
        p.start()
        p.join()
    return (time.perf_counter() - t) * 1e6 / count


def start_fork():
    return _start_join("fork", n(10, 100))


def start_spawn():
    return _start_join("spawn", n(2, 10))


def start_forkserver():
    ctx = mp.get_context("forkserver")
    ctx.Process(target=_noop).start()  # the server's own start is not counted
    return _start_join("forkserver", n(5, 50))


def _tiny(x):
    return x


def pool_map():
    count = n(200_000, 1_000_000)
    with mp.Pool(2) as pool:
        pool.map(_tiny, range(1000))
        t = time.perf_counter()
        pool.map(_tiny, range(count))
        return count / (time.perf_counter() - t) / 1e6


def pool_apply():
    count = n(200, 3_000)
    with mp.Pool(2) as pool:
        pool.apply(_tiny, (1,))
        t = time.perf_counter()
        for _ in range(count):
            pool.apply(_tiny, (1,))
        return (time.perf_counter() - t) * 1e6 / count


def array_bulk():
    length, rounds = 1 << 20, n(2, 10)
    arr = mp.Array("d", length)
    data = [float(i) for i in range(length)]
    t = time.perf_counter()
    for _ in range(rounds):
        arr[:] = data
        _ = arr[:]
    return 2 * length * 8 * rounds / (time.perf_counter() - t) / 1e9


def _barrier_child(barrier, rounds):
    for _ in range(rounds):
        barrier.wait()


def barrier():
    rounds = n(500, 5_000)
    b = mp.Barrier(2)
    p = mp.Process(target=_barrier_child, args=(b, rounds + 1))
    p.start()
    b.wait()
    t = time.perf_counter()
    for _ in range(rounds):
        b.wait()
    dt = time.perf_counter() - t
    p.join()
    return dt * 1e6 / rounds


def create_lock():
    count = n(2_000, 10_000)
    t = time.perf_counter()
    locks = [mp.Lock() for _ in range(count)]
    dt = time.perf_counter() - t
    del locks
    return dt * 1e6 / count


def create_value():
    count = n(2_000, 10_000)
    t = time.perf_counter()
    values = [mp.Value("Q", 0) for _ in range(count)]
    dt = time.perf_counter() - t
    del values
    return dt * 1e6 / count


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return float(line[len(field):].split()[0])
    return float("nan")


def _lock_memory(field):
    count = n(2_000, 10_000)
    before = _status_kib(field)
    locks = [mp.Lock() for _ in range(count)]
    for lk in locks:
        lk.acquire()
        lk.release()
    after = _status_kib(field)
    return (after - before) * 1000 / count


def lock_shmem():
    return _lock_memory("RssShmem:")


def lock_rss():
    return _lock_memory("VmRSS:")


if __name__ == "__main__":
    mp.set_start_method("fork")
    print(globals()[sys.argv[1]]())
