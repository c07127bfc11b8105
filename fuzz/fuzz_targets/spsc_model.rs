//! Sends and receives on the ring agree with a VecDeque at every step.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| multiproc_core::fuzz::spsc_model(data));
