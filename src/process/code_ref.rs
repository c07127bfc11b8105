//! Code named across processes: how a parent tells a child of the same
//! executable which function to run (a spawn target, a pool task, a
//! manager's registered type), and how the child makes sure the name is
//! one of those functions before it calls anything.
//!
//! A function is never named by its own address. Each one that may be
//! named has a [`Record`]: a constant in this program's image holding a
//! 128-bit tag, the kind of code it is (which fixes the type of the
//! function in it), a fingerprint of the types it was made for, and the
//! function. A [`CodeRef`] is the record's offset from a fixed anchor, and
//! the fingerprint the sender expects. Resolving one checks, in order:
//! - the offset lands, aligned, entirely inside the read-only data of this
//!   program's image (nothing written at run time), and the bytes there are
//!   copied out through the kernel (`os::image::read_own`), not read by a
//!   Rust access that could stray outside an object or fault;
//! - the bytes there start with the tag and the expected kind. The tag is
//!   written only into records: code compares against it by rebuilding it
//!   from two other constants at run time, and neither half is an address
//!   a function pointer could hold (their top bits are not canonical), so
//!   no other bytes of the image spell a tag followed by a kind;
//! - the record's fingerprint (a function of the record itself, called only
//!   once the record is known to be genuine) matches the sender's, so an
//!   entry is never handed arguments encoded for another type.
//!
//! So a forged reference can at worst name a real entry of the right kind
//! with arguments that entry decodes itself (and rejects if malformed);
//! it can never make a process jump to an address of its choosing.
//!
//! A reference that resolved is remembered (per process), so a pool
//! worker pays the checks once per task type, not once per chunk.
//!
//! The function a reference names is a zero-sized type (a `fn` item or a
//! closure that captures nothing); the side that runs it gets its value
//! from [`conjure`], the one place such a value is made from nothing.
//!
//! # Safety
//!
//! [`conjure`] makes a value of a zero-sized type `F` from no bytes: sound
//! because it is only called for callables (`fn` items and capture-free
//! closures), which carry no data and no invariant beyond their type.
//! [`CodeRef::resolve`] looks at an address computed from a possibly
//! hostile offset. Obligation: it forms a `&Record<K::Code>` there only
//! after the bytes, copied out by the kernel from inside the image's
//! read-only data, show the tag and kind that only a `record::<K>`
//! constant holds.
#![allow(unsafe_code)]

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Mutex, OnceLock};

/// What kind of code a record holds; fixes the type of its function.
pub(crate) trait Kind {
    /// Distinct for every kind (listed below).
    const ID: u64;
    /// The function's type.
    type Code: Copy + 'static;
}

/// The kinds, by number: each `impl Kind` names one of these.
pub(crate) const SPAWN_ENTRY: u64 = 1;
#[cfg_attr(not(mp_transfer), allow(dead_code))]
pub(crate) const POOL_TASK: u64 = 2;
#[cfg_attr(not(mp_transfer), allow(dead_code))]
pub(crate) const MANAGER_FACTORY: u64 = 3;

/// The tag, as two halves and masks: `TAG[i] == HALF[i] ^ MASK[i]`. Only
/// records hold `TAG` itself; the checks rebuild it at run time.
const HALF: [u64; 2] = [0x2f6b_93d1_47ae_0c58, 0x61e4_0b7a_d3c2_95f1];
const MASK: [u64; 2] = [0x7c31_5a0e_9b64_d2a7, 0x3f9a_c661_0e2b_47d9];
const TAG: [u64; 2] = [HALF[0] ^ MASK[0], HALF[1] ^ MASK[1]];

// Neither half is a canonical x86-64/AArch64 user address (the top 16 bits
// are neither all 0 nor all 1), so no function pointer equals one.
const _: () = {
    let top = [TAG[0] >> 48, TAG[1] >> 48];
    assert!(top[0] != 0 && top[0] != 0xffff && top[1] != 0 && top[1] != 0xffff);
};

/// A function that another copy of this program may be asked to call.
/// Lives in the image as a promoted constant ([`record`]).
#[repr(C)]
pub(crate) struct Record<C: 'static> {
    tag: [u64; 2],
    kind: u64,
    fingerprint: fn() -> u64,
    code: C,
}

/// The record of `code`, a function of kind `K`, made for the types that
/// `fingerprint` describes (a [`fingerprint`] instance).
pub(crate) const fn record<K: Kind>(fingerprint: fn() -> u64, code: K::Code) -> Record<K::Code> {
    Record { tag: TAG, kind: K::ID, fingerprint, code }
}

/// The value of callable `F` (a `fn` item or a closure that captures
/// nothing), made from nothing: what a child runs once a [`CodeRef`] to
/// `F`'s entry resolved. Zero-sized is asserted at compile time.
pub(crate) fn conjure<F>() -> F {
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "a function run in another process is a fn or a closure that captures nothing"
        )
    };
    // SAFETY: F is zero-sized (asserted above) and a callable (every caller
    // is an entry of a `Target`, `Task` or factory), which has no data and
    // no invariant to break (module docs).
    unsafe { std::mem::zeroed() }
}

/// A fingerprint of the type `T`, the same in every process running this
/// executable: FNV-1a of its name (a function's path and generic
/// arguments; two capture-free closures of one function may share a name,
/// which only weakens this check, never the others).
pub(crate) fn fingerprint<T: ?Sized>() -> u64 {
    std::any::type_name::<T>()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The reference point for offsets: a function of this crate.
#[inline(never)]
fn anchor() -> u64 {
    std::hint::black_box(TAG[0] ^ TAG[1])
}

fn anchor_address() -> usize {
    anchor as *const () as usize
}

/// The read-only data of the object holding the anchor, found once.
fn image() -> &'static [Range<usize>] {
    static IMAGE: OnceLock<Vec<Range<usize>>> = OnceLock::new();
    IMAGE.get_or_init(|| crate::os::image::constant_segments(anchor_address()))
}

/// The references that resolved in this process: (kind, offset) to the
/// fingerprint and the record's address.
type Resolved = HashMap<(u64, u64), (u64, usize)>;
static RESOLVED: Mutex<Option<Resolved>> = Mutex::new(None);

/// A function of this program, named for another process running the same
/// executable: its record's offset from the anchor, and the fingerprint
/// the sender expects of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CodeRef {
    offset: u64,
    fingerprint: u64,
}

impl CodeRef {
    /// The name of `record` (a promoted `record::<K>(..)` constant).
    pub(crate) fn of<C>(record: &'static Record<C>) -> CodeRef {
        let address = record as *const Record<C> as usize;
        CodeRef {
            offset: address.wrapping_sub(anchor_address()) as u64,
            fingerprint: (record.fingerprint)(),
        }
    }

    /// A reference made of raw parts (tests that forge one).
    pub(crate) fn from_parts(offset: u64, fingerprint: u64) -> CodeRef {
        CodeRef { offset, fingerprint }
    }

    pub(crate) fn parts(self) -> (u64, u64) {
        (self.offset, self.fingerprint)
    }

    /// The function this names, if it names a genuine record of kind `K`
    /// made for the fingerprinted types; why not otherwise.
    pub(crate) fn resolve<K: Kind>(self) -> Result<K::Code, &'static str> {
        let key = (K::ID, self.offset);
        let mut resolved = RESOLVED.lock().unwrap_or_else(|e| e.into_inner());
        let address = match resolved.get_or_insert_with(HashMap::new).get(&key) {
            Some(&(fingerprint, address)) if fingerprint == self.fingerprint => address,
            _ => {
                let address = self.find::<K>()?;
                resolved.get_or_insert_with(HashMap::new).insert(key, (self.fingerprint, address));
                address
            }
        };
        // SAFETY: `find` showed a `record::<K>` constant, a
        // `Record<K::Code>`, at `address`: aligned, immutable and alive for
        // the program's life.
        Ok(unsafe { &*(address as *const Record<K::Code>) }.code)
    }

    /// Where the record this names is, checked from scratch.
    fn find<K: Kind>(self) -> Result<usize, &'static str> {
        const NOWHERE: &str = "it names no function of this program";
        let size = std::mem::size_of::<Record<K::Code>>();
        let offset = usize::try_from(self.offset).map_err(|_| NOWHERE)?;
        let address = anchor_address().wrapping_add(offset);
        let inside = |r: &Range<usize>| {
            r.start <= address && address.checked_add(size).is_some_and(|end| end <= r.end)
        };
        if address % std::mem::align_of::<Record<K::Code>>() != 0 || !image().iter().any(inside) {
            return Err(NOWHERE);
        }
        let mut head = [0u8; 24];
        if !crate::os::image::read_own(address, &mut head) {
            return Err(NOWHERE);
        }
        let word = |i: usize| u64::from_ne_bytes(head[i * 8..i * 8 + 8].try_into().expect("8"));
        use std::hint::black_box;
        let expected = |i: usize| black_box(HALF[i]) ^ black_box(MASK[i]);
        if word(0) != expected(0) || word(1) != expected(1) {
            return Err(NOWHERE);
        }
        if word(2) != K::ID {
            return Err("it names a function of another kind");
        }
        // SAFETY: a tag and kind `K::ID` are written only by `record::<K>`,
        // whose constants are `Record<K::Code>`s; in bounds and aligned
        // (checked above), and immutable for the program's life.
        let record = unsafe { &*(address as *const Record<K::Code>) };
        if (record.fingerprint)() != self.fingerprint {
            return Err("its arguments were encoded for another type");
        }
        Ok(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    enum Test {}
    impl Kind for Test {
        const ID: u64 = 99;
        type Code = fn() -> u32;
    }
    enum Other {}
    impl Kind for Other {
        const ID: u64 = 98;
        type Code = fn() -> u32;
    }

    fn seven() -> u32 {
        7
    }

    static RECORD: Record<fn() -> u32> = record::<Test>(fingerprint::<u32>, seven);

    #[test]
    fn resolves_records_and_nothing_else() {
        let r = CodeRef::of(&RECORD);
        assert_eq!(r.resolve::<Test>().map(|f| f()), Ok(7));
        assert!(r.resolve::<Other>().is_err(), "another kind");
        let (offset, fp) = r.parts();
        assert!(CodeRef::from_parts(offset, fp ^ 1).resolve::<Test>().is_err(), "another type");
        let at_code = (seven as *const () as usize).wrapping_sub(anchor_address()) as u64;
        assert!(CodeRef::from_parts(at_code, fp).resolve::<Test>().is_err(), "code, not a record");
        for bad in [u64::MAX, 1 << 40, offset.wrapping_add(4), 0] {
            assert!(CodeRef::from_parts(bad, fp).resolve::<Test>().is_err(), "{bad:x}");
        }
    }

    /// Every aligned offset of the whole image is tried: the record is the
    /// one place that resolves.
    #[test]
    fn a_sweep_of_the_image_finds_the_record_alone() {
        let fp = fingerprint::<u32>();
        let align = std::mem::align_of::<Record<fn() -> u32>>();
        let mut found = Vec::new();
        for range in image() {
            let mut at = range.start.next_multiple_of(align);
            while at < range.end {
                let offset = at.wrapping_sub(anchor_address()) as u64;
                if CodeRef::from_parts(offset, fp).resolve::<Test>().is_ok() {
                    found.push(at);
                }
                at += align;
            }
        }
        let bytes: usize = image().iter().map(|r| r.end - r.start).sum();
        assert!(bytes > 1 << 20, "{bytes}");
        assert_eq!(found, [&RECORD as *const _ as usize]);
    }
}
