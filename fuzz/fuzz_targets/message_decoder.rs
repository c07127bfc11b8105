//! Arbitrary bytes as a typed message (plain data, and handles that cannot
//! be there): a value or an error, never a panic or a hang.
#![no_main]
type Message = (String, Vec<u64>, Option<(i32, f64)>, Vec<(bool, char)>);
type WithHandles = (u8, multiproc::Lock, multiproc::Value<u64>);

thread_local! {
    /// Live objects, so that this process maps an arena whose id, slots and
    /// generations the fuzzer can find by tracing comparisons: a reference
    /// to them from bytes alone must still be refused.
    static LIVE: (multiproc::Lock, multiproc::Value<u64>) =
        (multiproc::Lock::new().unwrap(), multiproc::Value::new(7).unwrap());
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    LIVE.with(|_| {});
    let _ = multiproc::__decode_untrusted::<Message>(data);
    let handles = multiproc::__decode_untrusted::<WithHandles>(data);
    assert!(handles.is_err(), "handles decoded from bytes alone");
});
