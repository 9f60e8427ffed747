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

/// Short SHA-256 fingerprint of an API key: the first 12 hex digits. The raw
/// key never leaves the parser.
pub fn key_fingerprint(key: &str) -> String {
    let mut hex = key_sha256(key);
    hex.truncate(12);
    hex
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
    format!("{id:032x}")
}

pub fn parse_id_hex(s: &str) -> Option<EventId> {
    if s.len() != 32 {
        return None;
    }
    u128::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

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
