//! `cargo run --release -p multiproc-bench -- --quick|--full`
//!
//! Each workload measured on three sides in one run: multiproc, Python 3's
//! `multiprocessing` (`benches/python_suite.py`), and the machine's floor
//! written straight against the OS; plus, where users would pick another
//! crate, that crate. The sides take turns run by run, so the machine's
//! drift hits all of them; each measurement runs in a fresh process, as
//! the Python side's do. Prints a table of medians with min–max and the
//! ratios, and writes the same as CSV and an SVG chart of the ratios:
//! `bench/results/` for `--full`, `target/bench-quick/` for `--quick`.
//!
//! `--quick` (under 2 minutes) is CI's smoke test: it fails if any side
//! printed no figure, and asserts no timing.
//!
//! `--oversubscribed` measures the hand-off workloads (round trips, the
//! 1->1 and 4->4 Queues) beside two busy-looping processes on this 2-core
//! machine, into `bench/results/oversubscribed/` (`--full`) or
//! `target/bench-oversubscribed/`.

// Windows measures a subset of the workloads (and no Python or rival
// sides): the rest is compiled there but unused.
#![cfg_attr(windows, allow(dead_code))]

#[cfg(all(feature = "tokio", any(target_os = "linux", windows)))]
mod asyncs;
#[cfg(unix)]
mod floor;
#[cfg(windows)]
mod floor_windows;
mod ours;
#[cfg(target_os = "linux")]
mod peers;
mod report;
#[cfg(unix)]
mod rivals;

use multiproc::StartMethod;
use std::path::PathBuf;
use std::process::Command;

/// How big each workload is: quick for CI, full for the README.
#[derive(Clone, Copy)]
pub struct Scale {
    quick: bool,
}

impl Scale {
    /// `quick` in quick mode, `full` otherwise.
    fn n<T>(self, quick: T, full: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

type Measure = Box<dyn Fn(Scale) -> f64>;

/// One side of a workload.
pub struct Side {
    pub kind: Kind,
    pub name: &'static str,
    run: Runner,
}

enum Runner {
    Rust(Measure),
    Python(&'static str),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Multiproc,
    Python,
    Floor,
    Rival,
}

pub struct Workload {
    pub name: &'static str,
    pub unit: &'static str,
    pub higher_is_better: bool,
    pub sides: Vec<Side>,
}

fn side(kind: Kind, name: &'static str, f: impl Fn(Scale) -> f64 + 'static) -> Side {
    Side { kind, name, run: Runner::Rust(Box::new(f)) }
}

fn ours(f: impl Fn(Scale) -> f64 + 'static) -> Side {
    side(Kind::Multiproc, "multiproc", f)
}

fn python(key: &'static str) -> Side {
    Side { kind: Kind::Python, name: "python", run: Runner::Python(key) }
}

fn floor(name: &'static str, f: impl Fn(Scale) -> f64 + 'static) -> Side {
    side(Kind::Floor, name, f)
}

fn rival(name: &'static str, f: impl Fn(Scale) -> f64 + 'static) -> Side {
    side(Kind::Rival, name, f)
}

/// The workloads iceoryx2 and interprocess are measured on.
#[derive(Clone, Copy)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
enum PeerWorkload {
    RoundTrip,
    Stream8,
    Stream64k,
    InPlace64k { read_all: bool },
}

/// The peers' sides of `w` (Linux only: see `peers`).
#[cfg(target_os = "linux")]
fn peers(w: PeerWorkload) -> Vec<Side> {
    let rt = |s: Scale| s.n(2_000, 20_000);
    let n8 = |s: Scale| s.n(200_000, 2_000_000);
    let n64k = |s: Scale| s.n(2_000, 20_000);
    match w {
        PeerWorkload::RoundTrip => vec![
            rival("iceoryx2", move |s| peers::iceoryx2_round_trip(rt(s))),
            rival("interprocess", move |s| peers::interprocess_round_trip(rt(s))),
        ],
        PeerWorkload::Stream8 => vec![
            rival("iceoryx2", move |s| peers::iceoryx2_stream(8, n8(s), false)),
            rival("interprocess", move |s| peers::interprocess_stream(8, n8(s))),
        ],
        PeerWorkload::Stream64k => {
            vec![rival("interprocess", move |s| peers::interprocess_stream(64 << 10, n64k(s)))]
        }
        PeerWorkload::InPlace64k { read_all } => {
            vec![rival("iceoryx2", move |s| peers::iceoryx2_stream(64 << 10, n64k(s), read_all))]
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn peers(_: PeerWorkload) -> Vec<Side> {
    Vec::new()
}

fn workload(
    name: &'static str,
    unit: &'static str,
    higher_is_better: bool,
    sides: Vec<Side>,
) -> Workload {
    Workload { name, unit, higher_is_better, sides }
}

/// Under Windows (Wine in CI): multiproc and Windows's own floor on the
/// workloads whose primitives differ there. No Python or rival sides:
/// neither runs under Wine here.
#[cfg(windows)]
fn workloads() -> Vec<Workload> {
    let rt = |s: Scale| s.n(2_000, 20_000);
    vec![
        workload(
            "Lock acquire+release",
            "ns",
            false,
            vec![ours(|s| ours::lock_uncontended(s.n(1_000_000, 20_000_000)))],
        ),
        workload(
            "Event ping-pong round trip",
            "us",
            false,
            vec![
                ours(move |s| ours::event_ping_pong(rt(s))),
                floor("semaphores", move |s| floor_windows::semaphore_round_trip(rt(s))),
            ],
        ),
        workload(
            "Pipe round trip, 8 B",
            "us",
            false,
            vec![
                ours(move |s| ours::pipe_round_trip(rt(s))),
                floor("semaphores", move |s| floor_windows::semaphore_round_trip(rt(s))),
            ],
        ),
        workload(
            "Queue 1->1, 8 B",
            "M msg/s",
            true,
            vec![ours(|s| ours::queue_throughput(1, s.n(1_000_000, 10_000_000), 8, false))],
        ),
    ]
    .into_iter()
    .chain(async_workloads(rt))
    .chain([workload(
        "Process start+join, spawn",
        "us",
        false,
        vec![
            ours(|s| ours::start_join(StartMethod::Spawn, s.n(5, 30))),
            floor("CreateProcessW+wait", |s| floor_windows::create_process_wait(s.n(5, 30))),
        ],
    )])
    .chain(scale_workloads().into_iter().take(2))
    .collect()
}

#[cfg(unix)]
fn workloads() -> Vec<Workload> {
    let rt = |s: Scale| s.n(2_000, 20_000);
    vec![
        workload(
            "Lock acquire+release",
            "ns",
            false,
            vec![
                ours(|s| ours::lock_uncontended(s.n(1_000_000, 20_000_000))),
                python("lock"),
                floor("CAS+store", |s| floor::cas(s.n(1_000_000, 20_000_000))),
            ],
        ),
        workload(
            "Value += 1 under its lock, 2 processes",
            "M/s",
            true,
            vec![
                ours(|s| ours::value_two_processes(s.n(200_000, 2_000_000))),
                python("value2"),
                floor("fetch_add, 2 processes", |s| {
                    floor::fetch_add_two_processes(s.n(200_000, 2_000_000))
                }),
            ],
        ),
        workload(
            "Event ping-pong round trip",
            "us",
            false,
            [
                ours(move |s| ours::event_ping_pong(rt(s))),
                python("event_rt"),
                floor("spinning line", move |s| floor::spin_round_trip(rt(s))),
            ]
            .into_iter()
            // The futex floor is Linux's system call, named as such.
            .chain(
                cfg!(target_os = "linux")
                    .then(|| floor("futex", move |s| floor::futex_round_trip(rt(s)))),
            )
            .collect(),
        ),
        workload(
            "Pipe round trip, 8 B",
            "us",
            false,
            vec![
                ours(move |s| ours::pipe_round_trip(rt(s))),
                python("pipe_rt"),
                floor("spinning line", move |s| floor::spin_round_trip(rt(s))),
                floor("socketpair", move |s| floor::kernel_round_trip(rt(s), true, false)),
                floor("pipe(2)", move |s| floor::kernel_round_trip(rt(s), false, false)),
                rival("ipc-channel", move |s| rivals::ipc_round_trip(rt(s))),
            ]
            .into_iter()
            .chain(peers(PeerWorkload::RoundTrip))
            .collect(),
        ),
    ]
    .into_iter()
    .chain(async_workloads(rt))
    .chain([
        workload(
            "Connection round trip, 8 B, Unix socket",
            "us",
            false,
            vec![
                ours(move |s| ours::connection_round_trip(rt(s))),
                python("conn_rt"),
                floor("socketpair", move |s| floor::kernel_round_trip(rt(s), true, false)),
                floor("socketpair, spinning", move |s| floor::kernel_round_trip(rt(s), true, true)),
            ],
        ),
        workload(
            "Manager dict get/set, Unix socket",
            "us/op",
            false,
            vec![
                ours(|s| ours::manager_dict(s.n(4_000, 40_000), true)),
                python("manager_dict"),
                floor("socketpair round trip, spinning", move |s| {
                    floor::kernel_round_trip(rt(s), true, true)
                }),
                rival("multiproc, socket only", |s| ours::manager_dict(s.n(4_000, 40_000), false)),
            ],
        ),
        workload(
            "Pipe stream, 8 B messages",
            "M msg/s",
            true,
            vec![
                ours(|s| ours::pipe_stream(8, s.n(200_000, 2_000_000)) * 1e9 / 8.0 / 1e6),
                python("stream_8"),
                rival("ipc-channel", |s| rivals::ipc_stream(8, s.n(200_000, 2_000_000))),
            ]
            .into_iter()
            .chain(peers(PeerWorkload::Stream8))
            .collect(),
        ),
        workload(
            "Pipe stream, 64 KiB messages",
            "GB/s",
            true,
            vec![
                ours(|s| ours::pipe_stream(64 << 10, s.n(2_000, 20_000))),
                python("stream_64k"),
                floor("shm copy, 2 processes", |s| floor::shm_stream(64 << 10, s.n(2_000, 20_000))),
                floor("memcpy 64 KiB, 1 thread", |s| floor::memcpy(64 << 10, s.n(20_000, 200_000))),
                rival("ipc-channel", |s| rivals::ipc_stream(64 << 10, s.n(2_000, 20_000))),
            ]
            .into_iter()
            .chain(peers(PeerWorkload::Stream64k))
            .collect(),
        ),
        workload(
            "Pipe stream, 64 KiB, in place (send_with/recv_with)",
            "GB/s",
            true,
            vec![
                ours(|s| ours::pipe_stream_in_place(64 << 10, s.n(2_000, 20_000), false)),
                floor("shm copy, 2 processes", |s| floor::shm_stream(64 << 10, s.n(2_000, 20_000))),
            ]
            .into_iter()
            .chain(peers(PeerWorkload::InPlace64k { read_all: false }))
            .collect(),
        ),
        workload(
            "Pipe stream, 64 KiB, in place, every byte read",
            "GB/s",
            true,
            vec![
                ours(|s| ours::pipe_stream_in_place(64 << 10, s.n(2_000, 20_000), true)),
                floor("shm copy, 2 processes", |s| floor::shm_stream(64 << 10, s.n(2_000, 20_000))),
            ]
            .into_iter()
            .chain(peers(PeerWorkload::InPlace64k { read_all: true }))
            .collect(),
        ),
        workload(
            "Pipe stream, 16 MiB messages",
            "GB/s",
            true,
            vec![
                ours(|s| ours::pipe_stream(16 << 20, s.n(8, 40))),
                python("stream_16m"),
                floor("shm copy, 2 processes", |s| floor::shm_stream(16 << 20, s.n(8, 40))),
                floor("memcpy 16 MiB, 1 thread", |s| floor::memcpy(16 << 20, s.n(8, 40))),
                rival("ipc-channel", |s| rivals::ipc_stream(16 << 20, s.n(8, 40))),
            ],
        ),
        workload(
            "Queue 1->1, 8 B",
            "M msg/s",
            true,
            vec![
                ours(|s| ours::queue_throughput(1, s.n(1_000_000, 10_000_000), 8, false)),
                python("queue11_8"),
                rival("crossbeam (threads)", |s| {
                    rivals::crossbeam_queue(s.n(1_000_000, 10_000_000))
                }),
            ],
        ),
        workload(
            "Queue 1->1, 8 B, get_bytes_into one buffer",
            "M msg/s",
            true,
            vec![ours(|s| ours::queue_throughput(1, s.n(1_000_000, 10_000_000), 8, true))],
        ),
        workload(
            "Queue<u64> 1->1, put/get",
            "M msg/s",
            true,
            vec![ours(|s| ours::queue_typed(s.n(1_000_000, 10_000_000))), python("queue11_8")],
        ),
        workload(
            "Queue 2->2, 8 B",
            "M msg/s",
            true,
            vec![
                ours(|s| ours::queue_throughput(2, s.n(1_000_000, 10_000_000), 8, false)),
                python("queue22_8"),
            ],
        ),
        workload(
            "Queue 4->4, 8 B",
            "M msg/s",
            true,
            vec![ours(|s| ours::queue_throughput(4, s.n(1_000_000, 4_000_000), 8, false))],
        ),
        workload(
            "Queue 1->1, 4 KiB",
            "M msg/s",
            true,
            vec![
                ours(|s| ours::queue_throughput(1, s.n(100_000, 1_000_000), 4096, false)),
                python("queue11_4k"),
            ],
        ),
        workload(
            "Queue 2->2, 4 KiB",
            "M msg/s",
            true,
            vec![
                ours(|s| ours::queue_throughput(2, s.n(100_000, 1_000_000), 4096, false)),
                python("queue22_4k"),
            ],
        ),
        workload(
            "Process start+join, fork",
            "us",
            false,
            vec![
                ours(|s| ours::start_join(StartMethod::Fork, s.n(20, 200))),
                python("start_fork"),
                floor("fork+wait", |s| floor::fork_wait(s.n(20, 200))),
            ],
        ),
        workload(
            "Process start+join, spawn",
            "us",
            false,
            vec![
                ours(|s| ours::start_join(StartMethod::Spawn, s.n(5, 30))),
                python("start_spawn"),
                floor("exec+wait", |s| floor::exec_wait(s.n(5, 30))),
                rival("procspawn", |s| rivals::procspawn_start_join(s.n(5, 30))),
            ],
        ),
        workload(
            "Process start+join, forkserver",
            "us",
            false,
            vec![
                ours(|s| ours::start_join(StartMethod::ForkServer, s.n(20, 200))),
                python("start_forkserver"),
                floor("fork+wait", |s| floor::fork_wait(s.n(20, 200))),
            ],
        ),
        workload(
            "Pool(2).map of tiny tasks",
            "M tasks/s",
            true,
            vec![ours(|s| ours::pool_map(s.n(200_000, 1_000_000))), python("pool_map")],
        ),
        workload(
            "Pool(2).apply round trip",
            "us",
            false,
            vec![ours(|s| ours::pool_apply(s.n(500, 5_000))), python("pool_apply")],
        ),
        workload(
            "Array<f64> bulk write+read, 1M",
            "GB/s",
            true,
            vec![
                ours(|s| ours::array_bulk(1 << 20, s.n(5, 50))),
                python("array_bulk"),
                floor("memcpy 8 MiB", |s| floor::memcpy(8 << 20, s.n(10, 100))),
            ],
        ),
        workload(
            "Barrier round, 2 processes",
            "us",
            false,
            vec![
                ours(move |s| ours::barrier_round(rt(s))),
                python("barrier"),
                floor("spinning line", move |s| floor::spin_round_trip(rt(s))),
            ],
        ),
    ])
    .chain(scale_workloads())
    .collect()
}

/// The async forms (built with `--features tokio`; Linux, and Windows
/// without tokio's socket side): a Pipe's round trip against tokio's own
/// `UnixStream`, and a Queue against its blocking form, both sides
/// awaiting on current-thread runtimes.
#[cfg(all(feature = "tokio", any(target_os = "linux", windows)))]
fn async_workloads(rt: impl Fn(Scale) -> u64 + Copy + 'static) -> Vec<Workload> {
    vec![
        workload(
            "Pipe round trip, 8 B, async (tokio)",
            "us",
            false,
            vec![
                ours(move |s| asyncs::pipe_round_trip(rt(s))),
                #[cfg(unix)]
                rival("tokio UnixStream", move |s| asyncs::tokio_unix_round_trip(rt(s))),
                rival("multiproc, blocking", move |s| ours::pipe_round_trip(rt(s))),
            ],
        ),
        workload(
            "Queue 1->1, 8 B, async (tokio)",
            "M msg/s",
            true,
            vec![
                ours(|s| asyncs::queue_throughput(s.n(1_000_000, 10_000_000))),
                rival("multiproc, blocking", |s| {
                    ours::queue_throughput(1, s.n(1_000_000, 10_000_000), 8, false)
                }),
            ],
        ),
    ]
}

#[cfg(not(all(feature = "tokio", any(target_os = "linux", windows))))]
fn async_workloads(_rt: impl Fn(Scale) -> u64 + Copy + 'static) -> Vec<Workload> {
    Vec::new()
}

/// Making many small objects: time per object, memory per 1,000; each
/// beside Python's (on Unix: it does not run under Wine here).
fn scale_workloads() -> Vec<Workload> {
    let count = |s: Scale| s.n(2_000, 10_000);
    let beside_python = |name, unit, f: fn(usize) -> f64, key| {
        let sides = [ours(move |s| f(count(s)))].into_iter();
        workload(name, unit, false, sides.chain(cfg!(unix).then(|| python(key))).collect())
    };
    vec![
        beside_python("Lock creation, 10,000 held", "us", ours::create_locks, "create_lock"),
        beside_python(
            "Value<u64> creation, 10,000 held",
            "us",
            ours::create_values,
            "create_value",
        ),
        beside_python(
            "Shared memory per 1,000 Locks (RssShmem)",
            "KiB",
            |n| ours::lock_memory(n, "RssShmem:"),
            "lock_shmem",
        ),
        beside_python(
            "Memory per 1,000 Locks (RSS, handles included)",
            "KiB",
            |n| ours::lock_memory(n, "VmRSS:"),
            "lock_rss",
        ),
    ]
}

/// One figure from the Python side, or why there is none.
fn run_python(key: &str, scale: Scale) -> Result<f64, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../benches/python_suite.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(key)
        .arg(if scale.quick { "quick" } else { "full" })
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().map_err(|_| format!("python3 printed {text:?}"))
}

/// One figure of a Rust side, measured in a fresh process (this binary
/// with `--measure`), so that no workload inherits another's memory (a
/// big process forks slower) or leftovers.
fn run_rust(workload: &str, side: usize, scale: Scale) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args([
            "--measure",
            workload,
            &side.to_string(),
            if scale.quick { "quick" } else { "full" },
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().map_err(|_| format!("printed {text:?}"))
}

/// The workloads `--oversubscribed` measures: the hand-offs, where a
/// waiter that spins while its peer is descheduled costs the most.
const OVERSUBSCRIBED: &[&str] = &[
    "Event ping-pong round trip",
    "Pipe round trip, 8 B",
    "Connection round trip, 8 B, Unix socket",
    "Manager dict get/set, Unix socket",
    "Pool(2).apply round trip",
    "Queue 1->1, 8 B",
    "Queue 4->4, 8 B",
];

/// Two processes that loop on the CPU for as long as the run lasts
/// (`--oversubscribed`), killed when dropped; each also ends by itself
/// once its parent is gone.
struct BusyLoops(Vec<std::process::Child>);

impl BusyLoops {
    fn start() -> BusyLoops {
        let exe = std::env::current_exe().expect("this binary");
        BusyLoops(
            (0..2)
                .map(|_| Command::new(&exe).arg("--busy-loop").spawn().expect("a busy loop"))
                .collect(),
        )
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `--busy-loop`: spins until its parent is gone.
#[cfg(unix)]
fn busy_loop() -> ! {
    let parent = std::os::unix::process::parent_id();
    loop {
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        if std::os::unix::process::parent_id() != parent {
            std::process::exit(0);
        }
    }
}

/// `--measure WORKLOAD SIDE quick|full`: one measurement, printed.
fn measure(args: &[String]) -> ! {
    let scale = Scale { quick: args.get(2).is_some_and(|s| s == "quick") };
    let index: usize = args.get(1).and_then(|s| s.parse().ok()).expect("side index");
    let w = workloads().into_iter().find(|w| Some(w.name) == args.first().map(String::as_str));
    let side = w.as_ref().and_then(|w| w.sides.get(index)).expect("workload and side");
    match &side.run {
        Runner::Rust(f) => println!("{}", f(scale)),
        Runner::Python(_) => panic!("a Python side is measured by python3"),
    }
    std::process::exit(0)
}

fn main() {
    multiproc::init();
    #[cfg(unix)]
    procspawn::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    #[cfg(windows)]
    floor_windows::serve_if_asked(&args);
    if args.first().is_some_and(|a| a == "--measure") {
        measure(&args[1..]);
    }
    #[cfg(unix)]
    if args.first().is_some_and(|a| a == "--busy-loop") {
        busy_loop();
    }
    let scale = Scale { quick: !args.iter().any(|a| a == "--full") };
    let runs = scale.n(3, 7);
    let only: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let oversubscribed = args.iter().any(|a| a == "--oversubscribed");
    // A run of some workloads only must not replace the full results.
    let out_dir = if !only.is_empty() {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-partial"))
    } else if oversubscribed {
        let dir =
            if scale.quick { "/../target/bench-oversubscribed" } else { "/results/oversubscribed" };
        PathBuf::from(env!("CARGO_MANIFEST_DIR").to_owned() + dir)
    } else if scale.quick {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-quick"))
    } else {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results"))
    };

    let mut machine = report::machine();
    let _busy = oversubscribed.then(|| {
        machine += ", beside two busy-looping processes";
        BusyLoops::start()
    });
    println!("{machine}; {runs} counted runs after 1 warm-up, sides interleaved; median [min-max]");
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for w in workloads() {
        if !only.is_empty()
            && !only.iter().any(|o| w.name.to_lowercase().contains(&o.to_lowercase()))
        {
            continue;
        }
        if oversubscribed && !OVERSUBSCRIBED.contains(&w.name) {
            continue;
        }
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); w.sides.len()];
        for round in 0..=runs {
            for (i, side) in w.sides.iter().enumerate() {
                let figure = match &side.run {
                    Runner::Rust(_) => run_rust(w.name, i, scale),
                    Runner::Python(key) => run_python(key, scale),
                };
                match figure {
                    // Round 0 is the warm-up.
                    Ok(v) if v.is_finite() && v > 0.0 => {
                        if round > 0 {
                            samples[i].push(v);
                        }
                    }
                    Ok(v) => missing.push(format!("{} / {}: figure {v}", w.name, side.name)),
                    Err(e) => missing.push(format!("{} / {}: {e}", w.name, side.name)),
                }
            }
        }
        let row = report::Row::new(&w, samples);
        row.print();
        results.push(row);
    }
    std::fs::create_dir_all(&out_dir).expect("results directory");
    let csv = out_dir.join("latest.csv");
    let svg = out_dir.join("ratios.svg");
    std::fs::write(&csv, report::csv(&results)).expect("writing the CSV");
    std::fs::write(&svg, report::svg(&results, &machine)).expect("writing the SVG");
    let md = out_dir.join("latest.md");
    std::fs::write(&md, report::markdown(&results, &machine)).expect("writing the table");
    println!("\nwrote {}, {} and {}", csv.display(), svg.display(), md.display());
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        eprintln!("\nsides that printed no figure:");
        for m in &missing {
            eprintln!("  {m}");
        }
        std::process::exit(1);
    }
}
