//! Identifiers: validation of ids that reach paths, stable event ids and API
//! key fingerprints.

use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::Xxh3;

/// A customer, VM or user id is used in paths and object keys only after it
/// passes this check: 1 to 64 characters of `[A-Za-z0-9._-]`, starting with a
/// letter or digit. So `..`, `/`, `\` and empty ids never reach a path.
pub fn valid_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Customer ids that cannot be billed: a customer's invoice is
/// `<customer_id>.csv` beside a revision's `summary.csv`, `diff.csv` and
/// `corrections.csv` (`bill::layout`), so these ids would name another file.
pub const RESERVED_CUSTOMER_IDS: [&str; 4] = ["summary", "credits", "diff", "corrections"];

/// Short SHA-256 fingerprint of an API key: the first 12 hex digits. The raw
/// key never leaves the parser.
pub fn key_fingerprint(key: &str) -> String {
    fingerprint_of_sha256(&key_sha256(key)).to_string()
}

/// [`key_fingerprint`] from the key's hex SHA-256 (when that is at hand).
pub fn fingerprint_of_sha256(sha256_hex: &str) -> &str {
    &sha256_hex[..12]
}

/// Full lowercase hex SHA-256 of an API key, as `users.csv` lists it.
pub fn key_sha256(key: &str) -> String {
    sha256_hex(key.as_bytes())
}

/// Lowercase hex SHA-256 of bytes (keys, published files).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A 128-bit event id. It is the XXH3-128 of the fields below, separated by
/// 0x1f, so it is stable across runs, machines and chunkings:
/// - with a request id: `table, vm, "rid", request_id, ts_micros`;
/// - otherwise: `table, vm, "line", ts_micros, line bytes`, then hashed again
///   with the number of identical earlier lines in the same file.
pub type EventId = u128;

pub fn request_event_id(table: &str, vm: &str, request_id: &str, ts_us: i64) -> EventId {
    let mut h = Xxh3::new();
    for part in [
        table.as_bytes(),
        vm.as_bytes(),
        b"rid".as_slice(),
        request_id.as_bytes(),
    ] {
        h.update(part);
        h.update(&[0x1f]);
    }
    h.update(&ts_us.to_le_bytes());
    h.digest128()
}

/// The id of a line before its occurrence number is known.
pub fn line_base_id(table: &str, vm: &str, ts_us: Option<i64>, line: &[u8]) -> EventId {
    let mut h = Xxh3::new();
    for part in [table.as_bytes(), vm.as_bytes(), b"line".as_slice()] {
        h.update(part);
        h.update(&[0x1f]);
    }
    match ts_us {
        Some(ts) => h.update(&ts.to_le_bytes()),
        None => h.update(b"-"),
    }
    h.update(&[0x1f]);
    h.update(line);
    h.digest128()
}

/// Final id of a content-identified line: the base id and how many identical
/// lines came before it in the same file.
pub fn with_occurrence(base: EventId, occurrence: u32) -> EventId {
    if occurrence == 0 {
        return base;
    }
    let mut h = Xxh3::new();
    h.update(&base.to_le_bytes());
    h.update(&occurrence.to_le_bytes());
    h.digest128()
}

/// The id of a reject: where it was and what it said, so the same bad line
/// read again is stored once.
pub fn reject_id(vm: &str, source_file: &str, line_no: u64, line: &[u8]) -> EventId {
    let mut h = Xxh3::new();
    for part in [b"rejects".as_slice(), vm.as_bytes(), source_file.as_bytes()] {
        h.update(part);
        h.update(&[0x1f]);
    }
    h.update(&line_no.to_le_bytes());
    h.update(&[0x1f]);
    h.update(line);
    h.digest128()
}

/// The lake's text form of an event id: 32 lowercase hex digits.
pub fn id_hex(id: EventId) -> String {
    let mut buf = [0u8; 32];
    write_id_hex(id, &mut buf).to_string()
}

/// [`id_hex`] into a caller's buffer, without allocating.
pub fn write_id_hex(id: EventId, buf: &mut [u8; 32]) -> &str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in buf.iter_mut().enumerate() {
        *b = DIGITS[((id >> (4 * (31 - i))) & 0xf) as usize];
    }
    std::str::from_utf8(buf).expect("hex digits are ASCII")
}

/// A set of event ids. Ids are already uniform hashes, so the set hashes
/// them by folding instead of running SipHash over 16 bytes.
pub type IdSet = std::collections::HashSet<EventId, std::hash::BuildHasherDefault<IdHasher>>;

/// An id's two halves xored: as uniform as the id, in 64 bits.
pub fn fold(id: EventId) -> u64 {
    (id as u64) ^ ((id >> 64) as u64)
}

/// The [`IdSet`] hasher: the two halves of a 128-bit id, xored (or a
/// 64-bit key already folded from one, as is).
#[derive(Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u128(&mut self, id: u128) {
        self.0 ^= fold(id);
    }
    /// A 64-bit key folded from an id is as uniform as the id.
    fn write_u64(&mut self, key: u64) {
        self.0 ^= key;
    }
}

pub fn parse_id_hex(s: &str) -> Option<EventId> {
    if s.len() != 32 {
        return None;
    }
    u128::from_str_radix(s, 16).ok()
}

/// The number of an id written as meter writes them (32 lowercase hex
/// digits): two such texts are equal exactly when their numbers are, so a
/// set of these numbers dedups as a set of the texts would.
pub fn canonical_id(id: &str) -> Option<EventId> {
    id.bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        .then(|| parse_id_hex(id))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_hex_is_32_lowercase_digits_and_round_trips() {
        for id in [
            0u128,
            1,
            u128::MAX,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ] {
            let hex = id_hex(id);
            assert_eq!(hex, format!("{id:032x}"));
            assert_eq!(parse_id_hex(&hex), Some(id));
        }
    }

    #[test]
    fn ids_that_could_escape_a_path_are_invalid() {
        for bad in [
            "",
            "..",
            "../../etc",
            "a/b",
            "a\\b",
            ".hidden",
            "-x",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(!valid_id(bad), "{bad:?} should be invalid");
        }
        for good in ["vm-a1b2c3", "cust_0001", "A.b-c_d", "7"] {
            assert!(valid_id(good), "{good:?} should be valid");
        }
    }

    #[test]
    fn fingerprint_is_short_sha256() {
        // sha256("abc") = ba7816bf...
        assert_eq!(key_fingerprint("abc"), "ba7816bf8f01");
        assert_eq!(key_sha256("abc").len(), 64);
    }

    #[test]
    fn event_ids_depend_on_every_part() {
        let a = request_event_id("api_usage", "vm1", "a1b2c3d4", 1);
        assert_ne!(a, request_event_id("api_usage", "vm2", "a1b2c3d4", 1));
        assert_ne!(a, request_event_id("api_usage", "vm1", "a1b2c3d4", 2));
        assert_ne!(a, request_event_id("api_requests", "vm1", "a1b2c3d4", 1));
        let b = line_base_id("activity", "vm1", Some(5), b"x");
        assert_ne!(with_occurrence(b, 1), b);
        assert_eq!(with_occurrence(b, 0), b);
        assert_eq!(parse_id_hex(&id_hex(a)), Some(a));
    }
}
