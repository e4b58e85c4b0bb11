//! The free-space floor: below it the node refuses what would fill its disk (uploads and new
//! transactions) with `RESOURCE_EXHAUSTED`, and keeps committing blocks, so a full disk cannot
//! stop a validator.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tonic::Status;

/// How long a free-space reading is trusted.
const FRESH: Duration = Duration::from_millis(500);

/// The free-space check of the filesystem holding the node's data.
pub struct DiskFloor {
    path: PathBuf,
    floor: u64,
    last: Mutex<Option<(Instant, u64)>>,
}

impl DiskFloor {
    /// Refuses writes when the filesystem of `path` has fewer than `floor` bytes free.
    pub fn new(path: PathBuf, floor: u64) -> Self {
        Self {
            path,
            floor,
            last: Mutex::new(None),
        }
    }

    /// Bytes available to the node on the filesystem of its data.
    pub fn free(&self) -> Option<u64> {
        let mut last = self.last.lock();
        if let Some((at, free)) = *last {
            if at.elapsed() < FRESH {
                return Some(free);
            }
        }
        let st = nix::sys::statvfs::statvfs(&self.path).ok()?;
        let free = (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64);
        *last = Some((Instant::now(), free));
        Some(free)
    }

    /// `RESOURCE_EXHAUSTED` (saying why) when the free space is under the floor.
    pub fn check(&self, what: &str) -> Result<(), Status> {
        match self.free() {
            Some(free) if free < self.floor => Err(Status::resource_exhausted(format!(
                "this node refuses {what}: its disk has {free} bytes free, under its floor of {} \
                 (it keeps committing blocks); try another node, or free space on this one",
                self.floor
            ))),
            _ => Ok(()),
        }
    }
}
