//! One ingest split across processes: `--shard I/N`.
//!
//! Shard `I` of `N` (0 <= I < N) owns the VMs whose id hashes to `I`:
//! `xxh3_64(vm_id as UTF-8 bytes, seed 0) mod N`. XXH3 is a published,
//! versioned hash (the same value on every machine, for every release of
//! meter), so N processes started anywhere split the input the same way and
//! together read every VM exactly once. Files outside a VM's folder (the
//! registry, a README) belong to shard 0, so that each line of the input is
//! accounted for by exactly one shard's report.
//!
//! Event ids include the VM (schemas/README.md), so shards never produce
//! the same event and their deduplication never needs another shard's rows.

use std::fmt;
use std::str::FromStr;

use xxhash_rust::xxh3::xxh3_64;

/// Shard `index` of `count`; [`Shard::ALL`] is the whole input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// The most shards a run may be split into.
pub const MAX_SHARDS: u32 = 4096;

impl Shard {
    /// The whole input, one process.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// The shard that owns `vm_id` among `count`.
    pub fn of_vm(vm_id: &str, count: u32) -> u32 {
        (xxh3_64(vm_id.as_bytes()) % u64::from(count.max(1))) as u32
    }

    /// Whether this shard reads the VM `vm_id`.
    pub fn owns_vm(&self, vm_id: &str) -> bool {
        Shard::of_vm(vm_id, self.count) == self.index
    }

    /// Whether this shard accounts for the input path `rel` (`/`-separated,
    /// relative to the input): a VM folder's files go by the VM, anything
    /// else to shard 0.
    pub fn owns_path(&self, rel: &str) -> bool {
        match rel.split_once('/') {
            Some((vm, _)) => self.owns_vm(vm),
            None => self.index == 0,
        }
    }

    pub fn is_all(&self) -> bool {
        self.count == 1
    }

    /// Whether two shards can read the same VM: the same shard, or splits
    /// of different sizes (`0/2` and `1/4` share VMs). Two ingests that
    /// overlap must not run at once: both would store the VMs they share.
    pub fn overlaps(&self, other: &Shard) -> bool {
        self.count != other.count || self.index == other.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `I/N` with 0 <= I < N <= [`MAX_SHARDS`] (I counts from 0, as
    /// Kubernetes' `JOB_COMPLETION_INDEX` does).
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || {
            format!(
                "`{s}` is not a shard: give I/N, 0 <= I < N <= {MAX_SHARDS}, for example 0/4 (I counts from 0)"
            )
        };
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || count > MAX_SHARDS || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_i_of_n_counting_from_zero() {
        assert_eq!("0/4".parse::<Shard>(), Ok(Shard { index: 0, count: 4 }));
        assert_eq!(" 3/4 ".parse::<Shard>(), Ok(Shard { index: 3, count: 4 }));
        assert_eq!("0/1".parse::<Shard>(), Ok(Shard::ALL));
        for bad in [
            "4/4", "1/0", "0/0", "-1/4", "1", "a/4", "1/4/5", "0/5000", "",
        ] {
            let err = bad.parse::<Shard>().unwrap_err();
            assert!(err.contains("I/N"), "{bad}: {err}");
        }
        assert_eq!(Shard { index: 2, count: 8 }.to_string(), "2/8");
    }

    #[test]
    fn the_hash_is_xxh3_64_of_the_vm_id() {
        // Pinned to the reference implementation (the C xxhash library
        // gives 0x436bccc82133635a for "vm-1"): the split must not change
        // between releases, or a
        // fleet of mixed versions would read some VMs twice and some never.
        assert_eq!(xxh3_64(b"vm-1"), 0x436b_ccc8_2133_635a);
        assert_eq!(
            Shard::of_vm("vm-1", 4),
            (0x436b_ccc8_2133_635au64 % 4) as u32
        );
        assert_eq!(Shard::of_vm("anything", 1), 0);
    }

    #[test]
    fn files_outside_a_vm_folder_belong_to_shard_zero() {
        let zero = Shard { index: 0, count: 3 };
        let one = Shard { index: 1, count: 3 };
        assert!(zero.owns_path("customers.csv") && !one.owns_path("customers.csv"));
        let vm = "vm-1";
        let owner = Shard::of_vm(vm, 3);
        for s in [zero, one, Shard { index: 2, count: 3 }] {
            assert_eq!(s.owns_path("vm-1/cliproxy/usage.log"), s.index == owner);
        }
    }

    #[test]
    fn overlap_is_same_shard_or_another_split() {
        let s = |i, n| Shard { index: i, count: n };
        assert!(s(1, 4).overlaps(&s(1, 4)));
        assert!(!s(1, 4).overlaps(&s(2, 4)));
        assert!(s(0, 2).overlaps(&s(1, 4)));
        assert!(Shard::ALL.overlaps(&s(3, 4)));
    }

    proptest! {
        /// Every VM belongs to exactly one shard of a split.
        #[test]
        fn every_vm_has_exactly_one_shard(vm in "[a-z0-9-]{1,24}", count in 1u32..64) {
            let owners = (0..count)
                .filter(|&index| Shard { index, count }.owns_vm(&vm))
                .count();
            prop_assert_eq!(owners, 1);
        }
    }
}
