//! Per-thread caches for the hot parse path. Event rows repeat a handful of
//! short strings (models, providers, endpoints, users) on every line, and
//! every line with an API key needs that key's SHA-256: interning gives one
//! shared [`Str`] per distinct value and hashes each key once per thread,
//! instead of an allocation and a SHA-256 per line.

use std::cell::RefCell;

use xxhash_rust::xxh3::Xxh3DefaultBuilder;

use crate::lake::tables::Str;
use crate::model::ids::key_sha256;

/// Entries kept per cache; past this the cache starts over, so a stream of
/// distinct values (request ids written into a model field, say) cannot grow
/// it without bound.
const MAX_ENTRIES: usize = 4096;

type Cache = std::collections::HashMap<Box<str>, Str, Xxh3DefaultBuilder>;

thread_local! {
    static STRINGS: RefCell<Cache> = RefCell::new(Cache::default());
    static KEYS: RefCell<Cache> = RefCell::new(Cache::default());
}

fn cached(
    cache: &'static std::thread::LocalKey<RefCell<Cache>>,
    key: &str,
    make: impl FnOnce() -> Str,
) -> Str {
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

/// Lowercase hex SHA-256 of an API key (`users.csv`'s `api_key_sha256`).
pub fn key_digest(key: &str) -> Str {
    cached(&KEYS, key, || Str::from(key_sha256(key)))
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
        assert_eq!(&*key_digest("sk-secret"), key_sha256("sk-secret"));
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
