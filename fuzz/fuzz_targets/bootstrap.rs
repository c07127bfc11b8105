//! What a spawned child makes of the bootstrap it reads: arbitrary bytes
//! (postcard garbage), and well-formed bootstraps naming arbitrary code
//! (an offset and a fingerprint) with arbitrary arguments. Each ends in a
//! refusal, never a panic, a fault or a call: no offset but a genuine
//! spawn entry's passes.
#![no_main]
use multiproc::__testing::{bootstrap, check_bootstrap, check_spawn_entry};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = check_bootstrap(data);
    if let Some((head, args)) = data.split_first_chunk::<16>() {
        let offset = u64::from_le_bytes(head[..8].try_into().unwrap());
        let fingerprint = u64::from_le_bytes(head[8..].try_into().unwrap());
        let entry = (offset, fingerprint);
        if check_spawn_entry(entry).is_err() {
            assert!(check_bootstrap(&bootstrap(entry, args.to_vec(), None)).is_err());
        }
    }
});
