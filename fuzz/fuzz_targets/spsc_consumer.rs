//! A consumer handed arbitrary ring memory: a message or an error, never a
//! panic, an out-of-bounds read or a hang.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| multiproc_core::fuzz::spsc_consumer(data));
