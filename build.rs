//! Sets the cfgs the facade's modules are gated on, from what the target's
//! platform backend provides (see `src/os/mod.rs`):
//! - `mp_transfer`: handles move between running processes and a channel
//!   notices a dead peer (channels, pipes, queues, pools, managers,
//!   connections, spawn with arguments);
//! - `mp_spawn`: children can be started (spawn), waited for, signalled;
//! - `mp_fork`: the fork and forkserver start methods;
//! - `mp_async`: the async forms (the `tokio` feature, where objects have
//!   readiness handles: Linux, macOS, FreeBSD).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(mp_transfer, mp_spawn, mp_fork, mp_async)");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let apple = std::env::var("CARGO_CFG_TARGET_VENDOR").is_ok_and(|v| v == "apple");
    let bells = apple || ["linux", "android", "freebsd"].contains(&os.as_str());
    if std::env::var_os("CARGO_FEATURE_TOKIO").is_some() && bells {
        println!("cargo::rustc-cfg=mp_async");
    }
    println!("cargo::rerun-if-changed=build.rs");
    let family = std::env::var("CARGO_CFG_TARGET_FAMILY").unwrap_or_default();
    if family.split(',').any(|f| f == "unix") {
        println!("cargo::rustc-cfg=mp_transfer");
        println!("cargo::rustc-cfg=mp_spawn");
        println!("cargo::rustc-cfg=mp_fork");
    }
    if family.split(',').any(|f| f == "windows") {
        println!("cargo::rustc-cfg=mp_transfer");
        println!("cargo::rustc-cfg=mp_spawn");
    }
}
