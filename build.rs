//! Sets the cfgs the facade's modules are gated on, from what the target's
//! platform backend provides (see `src/os/mod.rs`):
//! - `mp_transfer`: handles move between running processes and a channel
//!   notices a dead peer (channels, pipes, queues, pools, managers,
//!   connections, spawn with arguments);
//! - `mp_spawn`: children can be started (spawn), waited for, signalled;
//! - `mp_fork`: the fork and forkserver start methods;
//! - `mp_async`: the async forms and readiness handles (the `tokio`
//!   feature, where objects have bells: Linux, macOS, FreeBSD, Windows);
//! - `mp_bell_handles`: beside them, bells are handles that travel with
//!   their segments (the Unixes; a Windows segment's bell is its own).
fn main() {
    println!(
        "cargo::rustc-check-cfg=cfg(mp_transfer, mp_spawn, mp_fork, mp_async, mp_bell_handles)"
    );
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let apple = std::env::var("CARGO_CFG_TARGET_VENDOR").is_ok_and(|v| v == "apple");
    let family = std::env::var("CARGO_CFG_TARGET_FAMILY").unwrap_or_default();
    let unix = family.split(',').any(|f| f == "unix");
    let windows = family.split(',').any(|f| f == "windows");
    if unix {
        println!("cargo::rustc-cfg=mp_transfer");
        println!("cargo::rustc-cfg=mp_spawn");
        println!("cargo::rustc-cfg=mp_fork");
    }
    if windows {
        println!("cargo::rustc-cfg=mp_transfer");
        println!("cargo::rustc-cfg=mp_spawn");
    }
    let unix_bells = apple || ["linux", "android", "freebsd"].contains(&os.as_str());
    if std::env::var_os("CARGO_FEATURE_TOKIO").is_some() && (unix_bells || windows) {
        println!("cargo::rustc-cfg=mp_async");
        if unix_bells {
            println!("cargo::rustc-cfg=mp_bell_handles");
        }
    }
}
