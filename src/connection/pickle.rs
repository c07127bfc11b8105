//! Pickles on the wire ([`Connection::send_pickle`], `recv_pickle`): the
//! codec is `serde_pickle`'s; what is ours is the check a received pickle
//! passes first.
//!
//! A pickle may name any class and ask for it to be rebuilt (`GLOBAL`,
//! `STACK_GLOBAL`, `REDUCE`, `NEWOBJ`, `BUILD`, ...). `serde_pickle` reads
//! an instance of an unknown class as its bare `__dict__`, which would hand
//! the caller a dict where Python sent a `Point`. So the opcodes are walked
//! before decoding: a pickle that builds anything but Python's built-in
//! values (`dict`, `list`, `tuple`, `set`, `frozenset`, `str`, `bytes`,
//! `bytearray`, `int`, `float`, `bool`, `None`) is refused with a
//! [`Codec`](ErrorKind::Codec) error naming the class and the opcode.
//!
//! [`Connection::send_pickle`]: super::Connection::send_pickle

use crate::{Error, ErrorKind, Result};

/// How an opcode's argument is laid out.
enum Arg {
    None,
    Fixed(usize),
    /// A little-endian length of this many bytes, then that many bytes.
    Counted(usize),
    /// Text up to a newline, this many times.
    Lines(usize),
}

fn arg(op: u8) -> Option<Arg> {
    Some(match op {
        b'J' | b'j' | b'r' | 0x84 => Arg::Fixed(4),
        b'K' | b'h' | b'q' | 0x80 | 0x82 => Arg::Fixed(1),
        b'M' | 0x83 => Arg::Fixed(2),
        b'G' | 0x95 => Arg::Fixed(8),
        0x8a | b'U' | b'C' | 0x8c => Arg::Counted(1),
        0x8b | b'T' | b'B' | b'X' => Arg::Counted(4),
        0x8e | 0x8d | 0x96 => Arg::Counted(8),
        b'I' | b'L' | b'S' | b'V' | b'F' | b'g' | b'p' | b'P' => Arg::Lines(1),
        b'c' | b'i' => Arg::Lines(2),
        b'(' | b'.' | b'0' | b'1' | b'2' | b'N' | 0x88 | 0x89 | b']' | b'a' | b'e' | b'l'
        | b')' | b't' | 0x85 | 0x86 | 0x87 | b'}' | b'd' | b's' | b'u' | 0x8f | 0x90 | 0x91
        | 0x94 | b'R' | b'b' | 0x81 | 0x92 | 0x93 | b'o' | b'Q' | 0x97 | 0x98 => Arg::None,
        _ => return None,
    })
}

/// Python's name for an opcode that builds an object of a class.
fn builder_name(op: u8) -> Option<&'static str> {
    Some(match op {
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        b'b' => "BUILD",
        b'i' => "INST",
        b'o' => "OBJ",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        0x82..=0x84 => "EXT",
        _ => return None,
    })
}

/// The built-in globals whose `REDUCE` yields a built-in value (older
/// protocols' sets, bytearrays and big ints).
fn allowed_global(module: &str, name: &str) -> bool {
    matches!(module, "builtins" | "__builtin__")
        && matches!(name, "set" | "frozenset" | "bytearray" | "list" | "int")
}

fn refused(what: String) -> Error {
    Error::new(
        ErrorKind::Codec,
        format!(
            "unpickling a message: {what}, which only Python can rebuild (send dicts, lists, \
             tuples, sets, str, bytes, numbers, bool and None)"
        ),
    )
}

/// Checks that `pickle` builds nothing but built-in values (see the
/// module's docs). A pickle this walk cannot follow is left to the codec,
/// which reports it.
pub(crate) fn check(pickle: &[u8]) -> Result<()> {
    let mut at = 0;
    // The last two strings pushed (STACK_GLOBAL takes its names from them)
    // and the last global named.
    let mut strings: [Option<String>; 2] = [None, None];
    let mut global: Option<String> = None;
    while let Some(&op) = pickle.get(at) {
        at += 1;
        if op == b'.' {
            return Ok(());
        }
        let Some(layout) = arg(op) else { return Ok(()) };
        let start = at;
        let body = match layout {
            Arg::None => &pickle[at..at],
            Arg::Fixed(n) => {
                at += n;
                pickle.get(start..at).unwrap_or_default()
            }
            Arg::Counted(n) => {
                let Some(len) = pickle.get(at..at + n) else { return Ok(()) };
                let len = len.iter().rev().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
                let Some(end) = usize::try_from(len).ok().and_then(|l| (at + n).checked_add(l))
                else {
                    return Ok(());
                };
                at = end;
                pickle.get(start + n..end).unwrap_or_default()
            }
            Arg::Lines(n) => {
                for _ in 0..n {
                    let Some(nl) = pickle[at.min(pickle.len())..].iter().position(|&b| b == b'\n')
                    else {
                        return Ok(());
                    };
                    at += nl + 1;
                }
                pickle.get(start..at).unwrap_or_default()
            }
        };
        match op {
            0x8c | b'X' | 0x8d => {
                strings = [strings[1].take(), Some(String::from_utf8_lossy(body).into_owned())];
            }
            b'c' => {
                let text = String::from_utf8_lossy(body);
                let mut lines = text.lines();
                let (module, name) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
                if !allowed_global(module, name) {
                    return Err(refused(format!("a pickle of {module}.{name} (GLOBAL)")));
                }
                global = Some(format!("{module}.{name}"));
            }
            0x93 => {
                let [module, name] = [strings[0].clone(), strings[1].clone()]
                    .map(|s| s.unwrap_or_else(|| "?".into()));
                if !allowed_global(&module, &name) {
                    return Err(refused(format!("a pickle of {module}.{name} (STACK_GLOBAL)")));
                }
                global = Some(format!("{module}.{name}"));
            }
            _ => {}
        }
        if let Some(opcode) = builder_name(op) {
            let class = global.as_deref().unwrap_or("a class");
            return Err(refused(format!("an instance of {class} ({opcode})")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_values_pass_and_instances_are_named() {
        // pickle.dumps({"a": (1, None)}, protocol=4)
        let plain = b"\x80\x04\x95\r\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01N\x86\x94s.";
        check(plain).unwrap();
        // pickle.dumps(Point(1, 2), protocol=4), Point defined in __main__
        let point = b"\x80\x04\x95*\x00\x00\x00\x00\x00\x00\x00\x8c\x08__main__\x94\x8c\x05Point\x94\x93\x94)\x81\x94}\x94(\x8c\x01x\x94K\x01\x8c\x01y\x94K\x02ub.";
        let err = check(point).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Codec);
        assert!(err.to_string().contains("__main__.Point (STACK_GLOBAL)"), "{err}");
        // pickle.dumps(Point(1, 2), protocol=0)
        let old = b"ccopy_reg\n_reconstructor\np0\n(c__main__\nPoint\np1\nc__builtin__\nobject\np2\nNtp3\nRp4\n(dp5\nVx\np6\nI1\nsVy\np7\nI2\nsb.";
        assert!(check(old).unwrap_err().to_string().contains("copy_reg._reconstructor"));
        // Truncated or unknown input is left to the codec.
        check(b"\x80\x04\x8c\xff").unwrap();
        check(b"\xfe").unwrap();
    }
}
