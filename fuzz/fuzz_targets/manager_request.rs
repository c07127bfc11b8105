//! A manager's server fed what an authenticated but hostile client sends:
//! a run of requests, each either raw bytes or a well-formed request of
//! some kind with bytes flipped. Every request is answered (or ends the
//! connection) without a panic, a hang or an allocation from an unchecked
//! length.
#![no_main]
use multiproc::__testing::{manager_requests, serve_manager};
use std::sync::OnceLock;

fn examples() -> &'static [Vec<u8>] {
    static EXAMPLES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    EXAMPLES.get_or_init(manager_requests)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Chunks: a length byte, a mode byte, then the chunk. An even mode is
    // raw bytes; an odd one picks an example and XORs the chunk over it.
    let mut requests = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let Some((&mode, tail)) = tail.split_first() else { break };
        let (chunk, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        if mode % 2 == 0 {
            requests.push(chunk.to_vec());
        } else {
            let examples = examples();
            let mut request = examples[usize::from(mode / 2) % examples.len()].clone();
            for (i, b) in chunk.iter().enumerate() {
                if let Some(r) = request.get_mut(i) {
                    *r ^= b;
                }
            }
            requests.push(request);
        }
    }
    serve_manager(&requests);
});
