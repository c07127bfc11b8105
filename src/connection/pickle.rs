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
/// protocols' sets, bytearrays, big ints, and bytes as `_codecs.encode`).
fn allowed_global(module: &str, name: &str) -> bool {
    (matches!(module, "builtins" | "__builtin__")
        && matches!(name, "set" | "frozenset" | "bytearray" | "list" | "int"))
        || (module, name) == ("_codecs", "encode")
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

/// What the stack machine of [`check`] holds: a mark, or a value's size
/// once decoded (see [`check`]).
#[derive(Clone, Copy)]
enum Item {
    Mark,
    Size(u64),
}

/// The most a pickle may grow by when decoded, beyond its own length (in
/// the units of [`check`]).
const GROWTH: u64 = 1 << 20;

fn codec(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::Codec, format!("unpickling a message: {}", what.into()))
}

/// Checks `pickle` before it is decoded: that it builds nothing but
/// built-in values (see the module's docs), that every opcode is known and
/// its argument inside the message, and that it does not grow past its own
/// length (plus [`GROWTH`]) when decoded.
///
/// The last is a guard against a pickle that references one value many
/// times through the memo: Python shares the value, but a decoded Rust
/// value holds a copy for each reference, so a kilobyte of nested
/// references could ask for gigabytes. The walk keeps each value's size (a
/// unit for each value, one more for each 32 bytes of text or bytes) on a
/// model of the pickle machine's stack and memo, and refuses the pickle
/// once one would pass the limit.
pub(crate) fn check(pickle: &[u8]) -> Result<()> {
    let limit = pickle.len() as u64 + GROWTH;
    let mut stack: Vec<Item> = Vec::new();
    let mut memo: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    let mut at = 0;
    // The last two strings pushed (STACK_GLOBAL takes its names from them)
    // and the last global named.
    let mut strings: [Option<String>; 2] = [None, None];
    let mut global: Option<String> = None;
    let truncated = || codec("the pickle ends inside an opcode's argument");
    loop {
        let Some(&op) = pickle.get(at) else { return Err(codec("the pickle has no STOP")) };
        at += 1;
        if op == b'.' {
            return Ok(());
        }
        let layout = arg(op).ok_or_else(|| codec(format!("unknown pickle opcode {op:#04x}")))?;
        let start = at;
        let body = match layout {
            Arg::None => &pickle[at..at],
            Arg::Fixed(n) => {
                at += n;
                pickle.get(start..at).ok_or_else(truncated)?
            }
            Arg::Counted(n) => {
                let len = pickle.get(at..at + n).ok_or_else(truncated)?;
                let len = little_endian(len);
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|l| (at + n).checked_add(l))
                    .filter(|&end| end <= pickle.len())
                    .ok_or_else(truncated)?;
                at = end;
                &pickle[start + n..end]
            }
            Arg::Lines(n) => {
                for _ in 0..n {
                    let nl = pickle[at..].iter().position(|&b| b == b'\n').ok_or_else(truncated)?;
                    at += nl + 1;
                }
                &pickle[start..at]
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
        run(op, body, &mut stack, &mut memo)?;
        if let Some(Item::Size(top)) = stack.last() {
            if *top > limit {
                return Err(codec(format!(
                    "the pickle would grow past {limit} units decoded (its values are \
                     referenced too many times)"
                )));
            }
        }
    }
}

/// The size of a value its opcode pushes: one, and one more for each 32
/// bytes of its argument.
fn weight(body: &[u8]) -> u64 {
    1 + body.len() as u64 / 32
}

/// Pops down to the topmost mark; the sum of what was above it.
fn to_mark(stack: &mut Vec<Item>) -> Result<u64> {
    let mut sum = 0u64;
    loop {
        match stack.pop() {
            Some(Item::Mark) => return Ok(sum),
            Some(Item::Size(n)) => sum = sum.saturating_add(n),
            None => return Err(codec("the pickle pops a mark it never set")),
        }
    }
}

fn pop(stack: &mut Vec<Item>) -> Result<u64> {
    match stack.pop() {
        Some(Item::Size(n)) => Ok(n),
        _ => Err(codec("the pickle pops a value it never pushed")),
    }
}

/// Adds `n` to the value on top (a container that was added to).
fn grow(stack: &mut [Item], n: u64) -> Result<()> {
    match stack.last_mut() {
        Some(Item::Size(top)) => {
            *top = top.saturating_add(n);
            Ok(())
        }
        _ => Err(codec("the pickle adds to a value it never pushed")),
    }
}

/// A little-endian number of up to 8 bytes (pickle's lengths and indices).
fn little_endian(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0u64, |acc, &b| acc << 8 | u64::from(b))
}

/// A memo index from an opcode's argument: little-endian bytes, or text.
fn memo_index(op: u8, body: &[u8]) -> u64 {
    match op {
        b'g' | b'p' => String::from_utf8_lossy(body).trim().parse().unwrap_or(u64::MAX),
        _ => little_endian(body),
    }
}

/// One opcode's effect on the model stack and memo (sizes only).
fn run(
    op: u8,
    body: &[u8],
    stack: &mut Vec<Item>,
    memo: &mut std::collections::HashMap<u64, u64>,
) -> Result<()> {
    match op {
        // Framing, protocol: nothing.
        0x80 | 0x95 => {}
        b'(' => stack.push(Item::Mark),
        b'0' => drop(pop(stack)?),
        b'1' => drop(to_mark(stack)?),
        b'2' => {
            let top = pop(stack)?;
            stack.extend([Item::Size(top), Item::Size(top)]);
        }
        // Memo: store the top, push a stored one.
        0x94 => {
            let top = match stack.last() {
                Some(Item::Size(n)) => *n,
                _ => return Err(codec("the pickle memoizes nothing")),
            };
            memo.insert(memo.len() as u64, top);
        }
        b'p' | b'q' | b'r' => {
            let top = match stack.last() {
                Some(Item::Size(n)) => *n,
                _ => return Err(codec("the pickle memoizes nothing")),
            };
            memo.insert(memo_index(op, body), top);
        }
        b'g' | b'h' | b'j' => {
            let n = memo.get(&memo_index(op, body)).copied().unwrap_or(1);
            stack.push(Item::Size(n));
        }
        // Containers built from what is above a mark, or from the top.
        b'l' | b't' | b'd' | 0x91 => {
            let sum = to_mark(stack)?;
            stack.push(Item::Size(sum.saturating_add(1)));
        }
        0x85..=0x87 => {
            let mut sum = 1u64;
            for _ in 0..(op - 0x84) {
                sum = sum.saturating_add(pop(stack)?);
            }
            stack.push(Item::Size(sum));
        }
        b'a' => {
            let v = pop(stack)?;
            grow(stack, v)?;
        }
        b's' => {
            let v = pop(stack)?;
            let k = pop(stack)?;
            grow(stack, v.saturating_add(k))?;
        }
        b'e' | b'u' | 0x90 => {
            let sum = to_mark(stack)?;
            grow(stack, sum)?;
        }
        // A built-in global called on its arguments.
        b'R' => {
            let args = pop(stack)?;
            pop(stack)?;
            stack.push(Item::Size(args.saturating_add(1)));
        }
        0x93 => {
            pop(stack)?;
            pop(stack)?;
            stack.push(Item::Size(1));
        }
        // Everything else pushes one value made from its argument.
        _ => stack.push(Item::Size(weight(body))),
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
        // Truncated or unknown input is refused here, before the codec.
        assert!(check(b"\x80\x04\x8c\xff").unwrap_err().to_string().contains("ends inside"));
        assert!(check(b"\xfe").unwrap_err().to_string().contains("unknown pickle opcode 0xfe"));
        assert!(check(b"\x80\x04N").unwrap_err().to_string().contains("no STOP"));
    }

    #[test]
    fn a_pickle_that_references_itself_into_gigabytes_is_refused() {
        // A list; then 40 times: a list holding the previous one twice
        // (memo gets), which Python shares and a Rust value would copy.
        let mut p = b"\x80\x04]\x94".to_vec();
        for i in 0..40u32 {
            p.extend(b"(");
            p.extend([b'j']);
            p.extend(i.to_le_bytes());
            p.extend([b'j']);
            p.extend(i.to_le_bytes());
            p.extend(b"l\x94");
        }
        p.extend(b".");
        assert_eq!(p.len(), 4 + 40 * 13 + 1);
        let err = check(&p).unwrap_err();
        assert!(err.to_string().contains("grow past"), "{err}");
        // Shared a few times, as Python programs do, it passes.
        let mut ok = b"\x80\x04]\x94".to_vec();
        for i in 0..8u32 {
            ok.extend(b"(");
            for _ in 0..2 {
                ok.extend([b'j']);
                ok.extend(i.to_le_bytes());
            }
            ok.extend(b"l\x94");
        }
        ok.extend(b".");
        check(&ok).unwrap();
    }
}
