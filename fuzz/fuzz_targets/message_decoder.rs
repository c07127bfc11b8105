//! Arbitrary bytes as a typed message (plain data, and handles that cannot
//! be there): a value or an error, never a panic or a hang.
#![no_main]
type Message = (String, Vec<u64>, Option<(i32, f64)>, Vec<(bool, char)>);
type WithHandles = (u8, multiproc::Lock, multiproc::Value<u64>);

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = multiproc::__decode_untrusted::<Message>(data);
    let handles = multiproc::__decode_untrusted::<WithHandles>(data);
    assert!(handles.is_err(), "handles decoded from bytes alone");
});
