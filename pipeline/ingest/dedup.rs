//! The ids an ingest checks events against, per VM, table and date, in
//! bounded memory: those the lake holds and those this run has stored.
//!
//! An event is checked only against its own VM's ids (every event id
//! hashes the VM in) and only against those of its table and date (its
//! partition). A set is made the first time its VM, table and date come,
//! from the lake's id indexes (`lake::idindex`), and grows with the run's
//! new events; the sets of a VM go when its last file is stored. One VM can
//! still have millions of events (one busy VM's log in one file), so past
//! [`HELD_IDS`] ids in memory the least recently used sets are spilled to a
//! file of the run's own temporary folder and read back when their VM,
//! table and date come again. Time-ordered input touches a date once, so a
//! spilled set is rarely read back.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use chrono::NaiveDate;

use crate::lake::tables::{Str, Table};
use crate::model::error::{IoContext, Result};
use crate::model::ids::{EventId, IdSet};

/// Ids held in memory before sets are spilled (a held id takes 17 to 34
/// bytes of a hash set: 512k ids is 9 to 17 MiB; past it, a time-ordered
/// VM keeps its current day only).
pub const HELD_IDS: usize = 1 << 19;

type Key = (Table, NaiveDate);

enum Slot {
    Held {
        ids: IdSet,
        /// The block that last used it.
        used: u64,
    },
    Spilled {
        path: PathBuf,
        len: usize,
    },
}

pub struct VmIds {
    vms: HashMap<Str, HashMap<Key, Slot>>,
    /// Ids held in memory, and the most allowed before spilling.
    held: usize,
    budget: usize,
    /// The block being stored: its sets are never spilled while it is.
    block: u64,
    spill: Option<SpillDir>,
    spilled_sets: u64,
}

impl VmIds {
    /// Holds at most `budget` ids in memory, besides the sets of the block
    /// being stored.
    pub fn new(budget: usize) -> VmIds {
        VmIds {
            vms: HashMap::new(),
            held: 0,
            budget,
            block: 0,
            spill: None,
            spilled_sets: 0,
        }
    }

    /// Starts the next block: the sets it takes and puts back are the most
    /// recently used.
    pub fn next_block(&mut self) {
        self.block += 1;
    }

    /// The ids stored so far for `vm`'s events of `table` on `date`; the
    /// first time, those `load` adds (the lake's). Give them back with
    /// [`VmIds::put`].
    pub fn take(
        &mut self,
        vm: &Str,
        table: Table,
        date: NaiveDate,
        load: impl FnOnce(&mut IdSet) -> Result<()>,
    ) -> Result<IdSet> {
        let Some(slot) = self.vms.get_mut(vm).and_then(|m| m.remove(&(table, date))) else {
            let mut ids = IdSet::default();
            load(&mut ids)?;
            return Ok(ids);
        };
        match slot {
            Slot::Held { ids, .. } => {
                self.held -= ids.len();
                Ok(ids)
            }
            Slot::Spilled { path, len } => read_ids(&path, len),
        }
    }

    /// Puts back the set [`VmIds::take`] gave, with the ids added since.
    pub fn put(&mut self, vm: &Str, table: Table, date: NaiveDate, ids: IdSet) {
        if ids.is_empty() {
            return;
        }
        self.held += ids.len();
        let slot = Slot::Held {
            ids,
            used: self.block,
        };
        self.vms
            .entry(vm.clone())
            .or_default()
            .insert((table, date), slot);
    }

    /// Forgets `vm`'s ids: its last file is stored.
    pub fn drop_vm(&mut self, vm: &Str) {
        for (_, slot) in self.vms.remove(vm).into_iter().flatten() {
            match slot {
                Slot::Held { ids, .. } => self.held -= ids.len(),
                Slot::Spilled { path, .. } => {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }

    /// Spills the least recently used sets, not the current block's, until
    /// the ids held are within the budget.
    pub fn trim(&mut self) -> Result<()> {
        while self.held > self.budget {
            let victim = self
                .vms
                .iter()
                .flat_map(|(vm, sets)| {
                    sets.iter().filter_map(move |(key, slot)| match slot {
                        Slot::Held { used, .. } => Some((*used, vm, *key)),
                        Slot::Spilled { .. } => None,
                    })
                })
                .filter(|(used, _, _)| *used < self.block)
                .min_by_key(|(used, _, _)| *used)
                .map(|(_, vm, key)| (vm.clone(), key));
            let Some((vm, key)) = victim else {
                // Only the current block's sets are held.
                return Ok(());
            };
            let sets = self.vms.get_mut(&vm).expect("listed above");
            let Some(Slot::Held { ids, .. }) = sets.remove(&key) else {
                unreachable!("listed as held above");
            };
            if self.spill.is_none() {
                self.spill = Some(SpillDir::create()?);
            }
            let dir = self.spill.as_ref().expect("created above");
            self.spilled_sets += 1;
            let path = dir.0.join(format!("{}.ids", self.spilled_sets));
            write_ids(&path, &ids)?;
            self.held -= ids.len();
            sets.insert(
                key,
                Slot::Spilled {
                    path,
                    len: ids.len(),
                },
            );
        }
        Ok(())
    }

    /// Ids held in memory now.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Sets written to the spill folder so far.
    pub fn spilled_sets(&self) -> u64 {
        self.spilled_sets
    }
}

/// The run's spill folder, removed with everything in it when the run ends.
struct SpillDir(PathBuf);

impl SpillDir {
    fn create() -> Result<SpillDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("meter-ingest-ids-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&dir).write_ctx(&dir)?;
        Ok(SpillDir(dir))
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_ids(path: &PathBuf, ids: &IdSet) -> Result<()> {
    let mut bytes = Vec::with_capacity(ids.len() * 16);
    for id in ids {
        bytes.extend_from_slice(&id.to_le_bytes());
    }
    let mut file = std::fs::File::create(path).write_ctx(path)?;
    file.write_all(&bytes).write_ctx(path)
}

/// Reads a spilled set back and removes its file.
fn read_ids(path: &PathBuf, len: usize) -> Result<IdSet> {
    let mut bytes = Vec::with_capacity(len * 16);
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .read_ctx(path)?;
    if bytes.len() != len * 16 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{} bytes where {len} ids were spilled", bytes.len()),
        ))
        .read_ctx(path);
    }
    let mut ids = IdSet::with_capacity_and_hasher(len, Default::default());
    for chunk in bytes.chunks_exact(16) {
        ids.insert(EventId::from_le_bytes(chunk.try_into().expect("16 bytes")));
    }
    let _ = std::fs::remove_file(path);
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Runs blocks of (vm, date, id) through a [`VmIds`] the way the sink
    /// does; returns per event whether it was new, and the sets spilled.
    fn run(
        budget: usize,
        blocks: &[Vec<(u8, u8, u8)>],
        last_block_of_vm: &[usize],
    ) -> (Vec<bool>, u64) {
        let mut vm_ids = VmIds::new(budget);
        let vm = |v: u8| -> Str { format!("vm-{v}").into() };
        let date = |d: u8| NaiveDate::from_ymd_opt(2026, 10, 1 + d as u32).unwrap();
        let mut new = Vec::new();
        for (b, block) in blocks.iter().enumerate() {
            vm_ids.next_block();
            let mut keys: Vec<(u8, u8)> = block.iter().map(|(v, d, _)| (*v, *d)).collect();
            keys.sort();
            keys.dedup();
            let mut sets: Vec<IdSet> = keys
                .iter()
                .map(|(v, d)| {
                    // The "lake" holds id 0 of every VM and date.
                    vm_ids
                        .take(&vm(*v), Table::ApiUsage, date(*d), |ids| {
                            ids.insert(0);
                            Ok(())
                        })
                        .unwrap()
                })
                .collect();
            for (v, d, id) in block {
                let k = keys.binary_search(&(*v, *d)).unwrap();
                new.push(sets[k].insert(*id as EventId));
            }
            for ((v, d), ids) in keys.iter().zip(sets.drain(..)) {
                vm_ids.put(&vm(*v), Table::ApiUsage, date(*d), ids);
            }
            vm_ids.trim().unwrap();
            for (v, last) in last_block_of_vm.iter().enumerate() {
                if *last == b {
                    vm_ids.drop_vm(&vm(v as u8));
                }
            }
        }
        (new, vm_ids.spilled_sets())
    }

    proptest! {
        /// However small the budget, every event is judged new or seen as
        /// with every set in memory (the sets hold the lake's ids too).
        #[test]
        fn spilling_changes_no_answer(
            blocks in prop::collection::vec(prop::collection::vec((0u8..3, 0u8..4, 0u8..24), 1..12), 1..20),
            budget in 0usize..16,
        ) {
            // Each VM's sets go after the last block that has it.
            let mut last = vec![usize::MAX; 3];
            for (b, block) in blocks.iter().enumerate() {
                for (v, _, _) in block {
                    last[*v as usize] = b;
                }
            }
            let (want, never) = run(usize::MAX, &blocks, &last);
            prop_assert_eq!(never, 0);
            let (got, _) = run(budget, &blocks, &last);
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn spills_past_the_budget_and_reads_back() {
        let vm: Str = "vm-1".into();
        let day = |d| NaiveDate::from_ymd_opt(2026, 10, d).unwrap();
        let mut vm_ids = VmIds::new(100);
        for d in 1..=5 {
            vm_ids.next_block();
            let ids: IdSet = (0..60u128).map(|i| i + 1000 * d as u128).collect();
            vm_ids.put(&vm, Table::ApiUsage, day(d), ids);
            vm_ids.trim().unwrap();
            assert_eq!(vm_ids.held(), 60);
        }
        assert_eq!(vm_ids.spilled_sets(), 4);
        let dir = vm_ids.spill.as_ref().unwrap().0.clone();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 4);
        // Day 1 went first; it comes back whole, and its file goes.
        vm_ids.next_block();
        let back = vm_ids
            .take(&vm, Table::ApiUsage, day(1), |_| panic!("not loaded again"))
            .unwrap();
        assert_eq!(back, (1000..1060u128).collect::<IdSet>());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3);
        vm_ids.drop_vm(&vm);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        assert_eq!(vm_ids.held(), 0);
        drop(vm_ids);
        assert!(!dir.exists());
    }
}
