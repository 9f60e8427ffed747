//! Per-thread caches for the hot parse path. Event rows repeat a handful of
//! short strings (models, providers, endpoints, users) on every line, and
//! every line with an API key needs that key's SHA-256: interning gives one
//! shared [`Str`] per distinct value and hashes each key once per thread,
//! instead of an allocation and a SHA-256 per line.

use std::cell::RefCell;

use xxhash_rust::xxh3::Xxh3DefaultBuilder;

use crate::lake::tables::Str;
use crate::model::ids::{fingerprint_of_sha256, key_sha256};

/// Entries kept per cache; past this the cache starts over, so a stream of
/// distinct values (request ids written into a model field, say) cannot grow
/// it without bound.
const MAX_ENTRIES: usize = 4096;

type Cache<V> = std::collections::HashMap<Box<str>, V, Xxh3DefaultBuilder>;

/// An API key's digest and fingerprint.
pub type KeyDigest = (Str, Str);

thread_local! {
    static STRINGS: RefCell<Cache<Str>> = RefCell::new(Cache::default());
    static KEYS: RefCell<Cache<KeyDigest>> = RefCell::new(Cache::default());
}

fn cached<V: Clone>(
    cache: &'static std::thread::LocalKey<RefCell<Cache<V>>>,
    key: &str,
    make: impl FnOnce() -> V,
) -> V {
    cache.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(v) = c.get(key) {
            return v.clone();
        }
        if c.len() >= MAX_ENTRIES {
            c.clear();
        }
        let v = make();
        c.insert(key.into(), v.clone());
        v
    })
}

/// The shared copy of `s`.
pub fn intern(s: &str) -> Str {
    cached(&STRINGS, s, || Str::from(s))
}

/// Lowercase hex SHA-256 of an API key (`users.csv`'s `api_key_sha256`)
/// and the key's fingerprint (its first 12 digits).
pub fn key_digest(key: &str) -> KeyDigest {
    cached(&KEYS, key, || {
        let sha = key_sha256(key);
        let fp = Str::from(fingerprint_of_sha256(&sha));
        (Str::from(sha), fp)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_strings_are_shared_and_equal() {
        let a = intern("gpt-5");
        let b = intern("gpt-5");
        assert!(std::sync::Arc::ptr_eq(&a, &b));
        assert_eq!(&*intern("claude"), "claude");
        let (sha, fp) = key_digest("sk-secret");
        assert_eq!(&*sha, key_sha256("sk-secret"));
        assert_eq!(&*fp, crate::model::ids::key_fingerprint("sk-secret"));
    }

    #[test]
    fn a_full_cache_starts_over_and_stays_correct() {
        for i in 0..(MAX_ENTRIES * 2 + 3) {
            let s = format!("value-{i}");
            assert_eq!(&*intern(&s), s);
        }
        STRINGS.with(|c| assert!(c.borrow().len() <= MAX_ENTRIES));
    }
}
