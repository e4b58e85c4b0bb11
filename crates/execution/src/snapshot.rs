//! State snapshots: the whole state at one height in one file, checked against the state
//! commitment before any of it is used.
//!
//! ```text
//! file    = "PMRSNAP1" ‖ be64(height) ‖ be64(timestamp ms) ‖ state root (32) ‖ entry* ‖ 0x00
//! entry   = kind (1 account, 2 storage page, 3 code) ‖ be32(len) ‖ key ‖ value
//!   account: address (20) ‖ account (72)
//!   page:    address (20) ‖ be256(first slot) ‖ the page's stored encoding
//!   code:    code hash (32) ‖ code
//! ```
//!
//! Importing reads the file twice: the first pass recomputes the lattice of every entry and
//! refuses the snapshot unless its root, height and time are those of a header the caller
//! trusts (one the network signed) and its root the one the file names; only then does the
//! second pass write anything, and it recomputes the lattice again, writing the head only if
//! the file did not change in between. A snapshot with one changed, missing or extra entry is
//! refused and the store is left as it was.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use alloy_primitives::{keccak256, Address, B256};
use pmr_storage::{Column, Durability, Store};

use crate::changeset::AccountState;
use crate::commitment::StateLattice;
use crate::state_db::{self, Page, StateCounts};
use crate::ExecutionError;

const MAGIC: &[u8; 8] = b"PMRSNAP1";
/// Largest entry accepted (a contract's code is at most 24 KiB under EIP-170).
const MAX_ENTRY: usize = 64 * 1024;
/// Entries per write batch while importing.
const BATCH_ENTRIES: usize = 50_000;

/// What a snapshot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotInfo {
    /// The height whose state it is.
    pub height: u64,
    /// That block's time.
    pub timestamp_ms: u64,
    /// The state root it names (checked on import).
    pub state_root: B256,
    /// Its entries.
    pub counts: StateCounts,
}

/// One entry of a snapshot.
enum Entry {
    Account(Address, AccountState),
    Page([u8; 52], Vec<u8>),
    Code(B256, Vec<u8>),
}

/// Writes the state of `store`'s executed head to `path`, recomputing its root on the way:
/// a store whose entries do not give its head's root writes no snapshot.
pub fn export_snapshot(store: &Store, path: &Path) -> Result<SnapshotInfo, ExecutionError> {
    let head = state_db::read_head(store)?
        .ok_or_else(|| ExecutionError::Corrupt("the store holds no executed state".into()))?;
    let info = state_db::read_block_info(store, head.height)?.ok_or_else(|| {
        ExecutionError::Corrupt(format!("no block record for height {}", head.height))
    })?;
    // A new file only (no symlink followed, nothing truncated), readable by its owner alone:
    // it holds the whole state.
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| io(path, e))?
    };
    let mut out = BufWriter::new(file);
    let mut header = Vec::with_capacity(56);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&head.height.to_be_bytes());
    header.extend_from_slice(&info.timestamp_ms.to_be_bytes());
    header.extend_from_slice(head.state_root.as_slice());
    out.write_all(&header).map_err(|e| io(path, e))?;
    let mut failed = None;
    let mut lattice = StateLattice::empty();
    let mut entry = Vec::new();
    let counts = state_db::for_each_entry(store, head.height, |kind, key, value| {
        state_db::insert_entry(&mut lattice, kind, key, value, &mut entry);
        let len = (key.len() + value.len()) as u32;
        let r = out
            .write_all(&[kind])
            .and_then(|_| out.write_all(&len.to_be_bytes()))
            .and_then(|_| out.write_all(key))
            .and_then(|_| out.write_all(value));
        match r {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(io(path, e));
    }
    if lattice.root() != head.state_root {
        drop(out);
        let _ = std::fs::remove_file(path);
        return Err(ExecutionError::Corrupt(format!(
            "the stored state gives root {} but the head at height {} records {}: no snapshot \
             written",
            lattice.root(),
            head.height,
            head.state_root
        )));
    }
    out.write_all(&[0]).map_err(|e| io(path, e))?;
    let file = out.into_inner().map_err(|e| io(path, e.into_error()))?;
    file.sync_all().map_err(|e| io(path, e))?;
    Ok(SnapshotInfo {
        height: head.height,
        timestamp_ms: info.timestamp_ms,
        state_root: head.state_root,
        counts,
    })
}

/// Reads the snapshot at `path` and recomputes its commitment, writing nothing: the snapshot
/// is refused unless the recomputed root is the one it names and, when given, `trusted_root`.
pub fn verify_snapshot(
    path: &Path,
    trusted_root: Option<B256>,
) -> Result<SnapshotInfo, ExecutionError> {
    let (info, lattice) = read_entries(path, |_| Ok(()))?;
    check_root(&info, &lattice, trusted_root)?;
    Ok(info)
}

/// The header a snapshot must match: from a block the network signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedHead {
    /// The block's height.
    pub height: u64,
    /// Its state root.
    pub state_root: B256,
    /// Its time, milliseconds (contracts read it as `block.timestamp` at that height).
    pub timestamp_ms: u64,
}

/// Verifies the snapshot at `path` against `trusted` (its root, height and time; see
/// [`verify_snapshot`]), then writes its state into `store`, which must hold no state at all,
/// with the genesis record `(state root, time)` of height 0. Nothing is written unless the
/// whole file checks; the entries are then written in batches and the head last, so an import
/// that fails part-way leaves a store without a head, which neither an executor nor another
/// import will use (start again from an empty database).
pub(crate) fn import_snapshot(
    store: &Store,
    path: &Path,
    trusted: TrustedHead,
    genesis: (B256, u64),
) -> Result<SnapshotInfo, ExecutionError> {
    if !state_db::holds_no_state(store)? {
        return Err(ExecutionError::Snapshot(
            "the store already holds state (or a failed import's part of one): import into an \
             empty database"
                .into(),
        ));
    }
    let info = verify_snapshot(path, Some(trusted.state_root))?;
    if (info.height, info.timestamp_ms) != (trusted.height, trusted.timestamp_ms) {
        return Err(ExecutionError::Snapshot(format!(
            "it names height {} at {} ms; the trusted header is height {} at {} ms",
            info.height, info.timestamp_ms, trusted.height, trusted.timestamp_ms
        )));
    }
    let mut batch = store.batch();
    let mut staged = 0;
    // The second pass recomputes the lattice of what it writes.
    let (again, lattice) = read_entries(path, |entry| {
        match entry {
            Entry::Account(address, account) => {
                state_db::put_account(&mut batch, address, info.height, account);
            }
            Entry::Page(prefix, value) => {
                state_db::put_page(&mut batch, prefix, info.height, value);
            }
            Entry::Code(hash, code) => {
                batch.put(Column::Code, hash.as_slice(), code);
            }
        }
        staged += 1;
        if staged >= BATCH_ENTRIES {
            let full = std::mem::replace(&mut batch, store.batch());
            full.commit(Durability::Buffered)?;
            staged = 0;
        }
        Ok(())
    })?;
    // The file must not have changed between the passes.
    if again != info || lattice.root() != info.state_root {
        return Err(ExecutionError::Snapshot(
            "the snapshot changed while it was being imported".into(),
        ));
    }
    // The head goes last: a store without it holds no executed state and can be imported
    // into again.
    state_db::put_block_info(&mut batch, 0, genesis.0, genesis.1);
    // States below the snapshot's are not here: reads at those heights are refused.
    state_db::put_base(&mut batch, info.height);
    state_db::put_head(
        &mut batch,
        info.height,
        info.timestamp_ms,
        info.state_root,
        &lattice,
    );
    batch.commit(Durability::Sync)?;
    Ok(info)
}

fn check_root(
    info: &SnapshotInfo,
    lattice: &StateLattice,
    trusted_root: Option<B256>,
) -> Result<(), ExecutionError> {
    let computed = lattice.root();
    if computed != info.state_root {
        return Err(ExecutionError::Snapshot(format!(
            "its entries give state root {computed}, not the {} it names for height {}",
            info.state_root, info.height
        )));
    }
    if let Some(trusted) = trusted_root {
        if trusted != computed {
            return Err(ExecutionError::Snapshot(format!(
                "it is the state with root {computed}, not the trusted {trusted}"
            )));
        }
    }
    if info.counts.total() == 0 {
        return Err(ExecutionError::Snapshot("it holds no entries".into()));
    }
    Ok(())
}

/// Parses the snapshot, hands each entry to `each` and returns its header and lattice.
fn read_entries(
    path: &Path,
    mut each: impl FnMut(&Entry) -> Result<(), ExecutionError>,
) -> Result<(SnapshotInfo, StateLattice), ExecutionError> {
    let file = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut input = BufReader::new(file);
    let bad = |what: &str| ExecutionError::Snapshot(format!("{}: {what}", path.display()));
    let mut header = [0u8; 56];
    input
        .read_exact(&mut header)
        .map_err(|_| bad("shorter than its header"))?;
    if &header[..8] != MAGIC {
        return Err(bad("not a PMR state snapshot"));
    }
    let be64 = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or_default());
    let mut info = SnapshotInfo {
        height: be64(&header[8..16]),
        timestamp_ms: be64(&header[16..24]),
        state_root: B256::from_slice(&header[24..56]),
        counts: StateCounts::default(),
    };
    let mut lattice = StateLattice::empty();
    let mut buf = Vec::new();
    let mut scratch = Vec::new();
    // Entries of each kind in strictly increasing key order: no key twice.
    let mut last: [Vec<u8>; 3] = Default::default();
    loop {
        let mut kind = [0u8; 1];
        input
            .read_exact(&mut kind)
            .map_err(|_| bad("ends without its end marker"))?;
        if kind[0] == 0 {
            break;
        }
        let mut len = [0u8; 4];
        input
            .read_exact(&mut len)
            .map_err(|_| bad("ends inside an entry"))?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_ENTRY {
            return Err(bad(&format!("an entry of {len} bytes")));
        }
        buf.resize(len, 0);
        input
            .read_exact(&mut buf)
            .map_err(|_| bad("ends inside an entry"))?;
        let (entry, key_len) = match kind[0] {
            1 => {
                let account = (len == 20 + AccountState::ENCODED_LEN)
                    .then(|| AccountState::decode(&buf[20..]))
                    .flatten()
                    .ok_or_else(|| bad("a malformed account"))?;
                let address = Address::from_slice(&buf[..20]);
                info.counts.accounts += 1;
                (Entry::Account(address, account), 20)
            }
            2 => {
                if len < 53 {
                    return Err(bad("a malformed storage page"));
                }
                let decoded = Page::decode(&buf[52..]).ok_or_else(|| bad("a malformed page"))?;
                if decoded == Page::default() {
                    return Err(bad("a storage page of zeros"));
                }
                let mut prefix = [0u8; 52];
                prefix.copy_from_slice(&buf[..52]);
                info.counts.pages += 1;
                (Entry::Page(prefix, buf[52..].to_vec()), 52)
            }
            3 => {
                if len < 32 {
                    return Err(bad("a malformed code"));
                }
                let hash = B256::from_slice(&buf[..32]);
                if keccak256(&buf[32..]) != hash {
                    return Err(bad(&format!("code {hash} does not hash to its key")));
                }
                info.counts.codes += 1;
                (Entry::Code(hash, buf[32..].to_vec()), 32)
            }
            k => return Err(bad(&format!("an entry of unknown kind {k}"))),
        };
        let previous = &mut last[kind[0] as usize - 1];
        if !previous.is_empty() && buf[..key_len] <= previous[..] {
            return Err(bad("entries out of order or repeated"));
        }
        previous.clear();
        previous.extend_from_slice(&buf[..key_len]);
        // The entry as the store holds it (key, value): hashed as a recomputation from disk
        // hashes it.
        state_db::insert_entry(
            &mut lattice,
            kind[0],
            &buf[..key_len],
            &buf[key_len..],
            &mut scratch,
        );
        each(&entry)?;
    }
    let mut trailing = [0u8; 1];
    if input.read(&mut trailing).map_err(|e| io(path, e))? != 0 {
        return Err(bad("bytes after its end marker"));
    }
    Ok((info, lattice))
}

fn io(path: &Path, e: std::io::Error) -> ExecutionError {
    ExecutionError::Snapshot(format!("{}: {e}", path.display()))
}
