//! The authkey handshake of Python's `multiprocessing.connection`, both
//! generations.
//!
//! Each side proves it knows the key: the listener *delivers* a challenge
//! and checks the answer, then *answers* the client's challenge.
//! - Python ≤ 3.11 challenges with `#CHALLENGE#` and 20 random bytes, and
//!   answers any challenge with the raw 16-byte HMAC-MD5 of what follows
//!   `#CHALLENGE#`.
//! - Python ≥ 3.12 challenges with `#CHALLENGE#{sha256}` and 40 random
//!   bytes, and answers `{digest}` + the HMAC, with the digest the
//!   challenge named, over the whole payload, prefix included.
//!
//! We challenge as 3.12 does (a 3.11 peer answers it with raw MD5, which we
//! accept), and answer as either, by the challenge's shape. Handshake
//! messages are at most 256 bytes; digests are compared in constant time.

use super::stream::Stream;
use crate::os::random;
use crate::time::Deadline;
use crate::{Error, ErrorKind, Result};
use hmac::{Hmac, Mac};

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
/// The longest handshake message either side accepts.
const HANDSHAKE_MAX: usize = 256;
/// Random bytes in a challenge we deliver (Python 3.12's `MESSAGE_LENGTH`).
const NONCE_LEN: usize = 40;
/// A legacy challenge (20 random bytes) or a legacy answer (raw MD5).
const LEGACY_LENGTHS: [usize; 2] = [20, 16];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Digest {
    Md5,
    Sha256,
    Sha384,
    Sha3_256,
    Sha3_384,
}

impl Digest {
    fn from_name(name: &[u8]) -> Option<Digest> {
        Some(match name {
            b"md5" => Digest::Md5,
            b"sha256" => Digest::Sha256,
            b"sha384" => Digest::Sha384,
            b"sha3_256" => Digest::Sha3_256,
            b"sha3_384" => Digest::Sha3_384,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Digest::Md5 => "md5",
            Digest::Sha256 => "sha256",
            Digest::Sha384 => "sha384",
            Digest::Sha3_256 => "sha3_256",
            Digest::Sha3_384 => "sha3_384",
        }
    }

    /// HMAC of `message` under `key`, with `finish` given the MAC.
    fn with_mac<R>(self, key: &[u8], message: &[u8], finish: impl MacFinish<R>) -> R {
        fn keyed<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> M {
            let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
            mac.update(message);
            mac
        }
        match self {
            Digest::Md5 => finish.run(keyed::<Hmac<md5::Md5>>(key, message)),
            Digest::Sha256 => finish.run(keyed::<Hmac<sha2::Sha256>>(key, message)),
            Digest::Sha384 => finish.run(keyed::<Hmac<sha2::Sha384>>(key, message)),
            Digest::Sha3_256 => finish.run(keyed::<Hmac<sha3::Sha3_256>>(key, message)),
            Digest::Sha3_384 => finish.run(keyed::<Hmac<sha3::Sha3_384>>(key, message)),
        }
    }

    fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        struct Bytes;
        impl MacFinish<Vec<u8>> for Bytes {
            fn run<M: Mac>(self, mac: M) -> Vec<u8> {
                mac.finalize().into_bytes().to_vec()
            }
        }
        self.with_mac(key, message, Bytes)
    }

    /// Whether `tag` is the HMAC of `message`, compared in constant time.
    fn verify(self, key: &[u8], message: &[u8], tag: &[u8]) -> bool {
        struct Verify<'a>(&'a [u8]);
        impl MacFinish<bool> for Verify<'_> {
            fn run<M: Mac>(self, mac: M) -> bool {
                mac.verify_slice(self.0).is_ok()
            }
        }
        self.with_mac(key, message, Verify(tag))
    }
}

/// What to do with a keyed MAC of whichever digest (a generic closure).
trait MacFinish<R> {
    fn run<M: Mac>(self, mac: M) -> R;
}

/// The digest a message names and the rest of it; `None` for the legacy
/// shapes (a 20-byte challenge or a 16-byte raw MD5 answer).
fn digest_and_payload(message: &[u8]) -> Result<(Option<Digest>, &[u8])> {
    if LEGACY_LENGTHS.contains(&message.len()) {
        return Ok((None, message));
    }
    if let Some(rest) = message.strip_prefix(b"{") {
        if let Some(close) = rest.iter().take(9).position(|&b| b == b'}') {
            if let Some(digest) = Digest::from_name(&rest[..close]) {
                return Ok((Some(digest), &rest[close + 1..]));
            }
        }
    }
    Err(auth("unsupported handshake message: wrong length, no digest prefix, or unknown digest"))
}

fn auth(message: &'static str) -> Error {
    Error::new(ErrorKind::Auth, message)
}

/// The answer to a challenge's payload (what follows `#CHALLENGE#`).
fn answer_to(key: &[u8], challenge: &[u8]) -> Result<Vec<u8>> {
    Ok(match digest_and_payload(challenge)?.0 {
        None => Digest::Md5.mac(key, challenge),
        Some(digest) => {
            let mut reply = format!("{{{}}}", digest.name()).into_bytes();
            reply.extend(digest.mac(key, challenge));
            reply
        }
    })
}

/// Whether `answer` is right for the challenge payload we sent.
fn answer_is_right(key: &[u8], challenge: &[u8], answer: &[u8]) -> bool {
    match digest_and_payload(answer) {
        Ok((digest, mac)) => digest.unwrap_or(Digest::Md5).verify(key, challenge, mac),
        Err(_) => false,
    }
}

/// The listener's half first: challenge the peer, check its answer, tell it.
pub(crate) fn deliver(stream: &Stream, key: &[u8], deadline: Deadline) -> Result<()> {
    let (message, challenge) = make_challenge()?;
    stream.send(&message, deadline)?;
    let answer = recv_message(stream, deadline)?;
    judge(stream, key, &challenge, &answer, deadline)
}

/// Answers the peer's challenge and reads its verdict.
pub(crate) fn answer(stream: &Stream, key: &[u8], deadline: Deadline) -> Result<()> {
    let challenge = recv_message(stream, deadline)?;
    stream.send(&respond(key, &challenge)?, deadline)?;
    check_verdict(&recv_message(stream, deadline)?)
}

/// The next handshake message from the peer, by `deadline`. One over 256
/// bytes, or bytes that are not a frame, fail the handshake (`Auth`).
pub(crate) fn recv_message(stream: &Stream, deadline: Deadline) -> Result<Vec<u8>> {
    stream.recv(HANDSHAKE_MAX, deadline).map_err(|e| match e.kind() {
        ErrorKind::TooLarge => {
            Error::new(ErrorKind::Auth, "handshake message over 256 bytes").with_source(e)
        }
        ErrorKind::Corrupt => Error::new(ErrorKind::Auth, "a malformed handshake").with_source(e),
        _ => e,
    })
}

/// A fresh challenge: the message to send, and the payload whose MAC the
/// answer must be.
pub(crate) fn make_challenge() -> Result<(Vec<u8>, Vec<u8>)> {
    let mut challenge = b"{sha256}".to_vec();
    challenge.extend(random::<NONCE_LEN>()?);
    Ok(([CHALLENGE, &challenge].concat(), challenge))
}

/// Checks the peer's `answer` to our `challenge` and tells it the verdict.
pub(crate) fn judge(
    stream: &Stream,
    key: &[u8],
    challenge: &[u8],
    answer: &[u8],
    deadline: Deadline,
) -> Result<()> {
    if answer_is_right(key, challenge, answer) {
        stream.send(WELCOME, deadline)
    } else {
        let _ = stream.send(FAILURE, deadline);
        Err(auth("the peer's answer to our challenge was wrong: it has another authkey"))
    }
}

/// Our answer to the peer's challenge `message`.
pub(crate) fn respond(key: &[u8], message: &[u8]) -> Result<Vec<u8>> {
    let challenge = message
        .strip_prefix(CHALLENGE)
        .ok_or_else(|| auth("the peer did not send an authkey challenge"))?;
    if challenge.len() < LEGACY_LENGTHS[0] {
        return Err(auth("the peer's challenge is too short"));
    }
    answer_to(key, challenge)
}

/// The peer's verdict on our answer.
pub(crate) fn check_verdict(message: &[u8]) -> Result<()> {
    if message == WELCOME {
        Ok(())
    } else {
        Err(auth("the peer rejected our answer: it has another authkey"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Vectors from Python 3.11's `hmac.new(key, msg, name).hexdigest()`.
    #[test]
    fn macs_match_python() {
        let (key, msg) = (b"key".as_slice(), b"{sha256}challenge".as_slice());
        assert_eq!(hex(&Digest::Md5.mac(key, msg)), "1483a8aaf69f853bd9357090b93bb92d");
        assert_eq!(
            hex(&Digest::Sha256.mac(key, msg)),
            "f40908a45f9b903a531cca22ce8099c7d62707fe5db474148583900cea87bc38"
        );
    }

    #[test]
    fn answers_by_the_challenges_shape() {
        let key = b"secret";
        let legacy = [7u8; 20];
        assert_eq!(answer_to(key, &legacy).unwrap(), Digest::Md5.mac(key, &legacy));
        let modern = [b"{sha3_384}".as_slice(), &[9; 40]].concat();
        let reply = answer_to(key, &modern).unwrap();
        assert!(reply.starts_with(b"{sha3_384}"));
        assert_eq!(&reply[10..], Digest::Sha3_384.mac(key, &modern));
        assert!(answer_is_right(key, &modern, &reply));
        assert!(!answer_is_right(b"other", &modern, &reply));
        assert!(answer_to(key, b"{sha1}0123456789012345678901234").is_err());
        assert!(answer_to(key, b"no prefix and not twenty").is_err());
    }

    #[test]
    fn accepts_each_digest_and_raw_md5() {
        let key = b"k";
        let challenge = [b"{sha256}".as_slice(), &[1; 40]].concat();
        for name in ["md5", "sha256", "sha384", "sha3_256", "sha3_384"] {
            let digest = Digest::from_name(name.as_bytes()).unwrap();
            let reply = [format!("{{{name}}}").as_bytes(), &digest.mac(key, &challenge)].concat();
            assert!(answer_is_right(key, &challenge, &reply), "{name}");
            let mut bad = reply.clone();
            *bad.last_mut().unwrap() ^= 1;
            assert!(!answer_is_right(key, &challenge, &bad), "{name}");
        }
        assert!(answer_is_right(key, &challenge, &Digest::Md5.mac(key, &challenge)));
        // A digest of the wrong length for its name is refused.
        let short = [b"{sha256}".as_slice(), &Digest::Md5.mac(key, &challenge)].concat();
        assert!(!answer_is_right(key, &challenge, &short));
    }
}
