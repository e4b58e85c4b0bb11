//! `pmr blob`: files encrypted on the client, stored as ciphertext through a node.
//!
//! `put` encrypts a file with a fresh [`DataKey`] (XChaCha20-Poly1305, `pmr-content`'s
//! [`EncryptingReader`]), uploads only the ciphertext and writes the key to a file of mode 0600;
//! `get` downloads, authenticates and decrypts into a private temporary file that is renamed
//! into place only once every segment has verified.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use eyre::{bail, eyre, Context, Result};
use futures::StreamExt;
use pmr_blob::{ciphertext_len, DataKey, Decryptor, EncryptingReader};
use pmr_client::PmrClient;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use crate::keys::{read_secret_file, write_secret_file};

/// `type` of a blob key file.
pub const KEY_TYPE: &str = "pmr-blob-key/xchacha20poly1305-v1";
/// Files smaller than this get no progress lines.
const PROGRESS_MIN: u64 = 8 * 1024 * 1024;
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

#[derive(Serialize, Deserialize)]
struct BlobKeyFile {
    r#type: String,
    /// Hex of the 32-byte data-encryption key.
    key: String,
    note: String,
}

/// Writes a new key file (mode 0600); an existing file is never overwritten.
pub fn write_key_file(path: &Path, key: &DataKey) -> Result<()> {
    let file = BlobKeyFile {
        r#type: KEY_TYPE.into(),
        key: hex::encode(key.as_bytes()),
        note: "data-encryption key of a PMR blob: whoever holds it can read the blob".into(),
    };
    write_secret_file(path, serde_json::to_string_pretty(&file)?.as_bytes())
}

/// Reads a key file written by [`write_key_file`], refusing one others can read.
pub fn read_key_file(path: &Path) -> Result<DataKey> {
    let bytes = read_secret_file(path)?;
    let file: BlobKeyFile = serde_json::from_slice(&bytes)
        .wrap_err_with(|| format!("{} is not a blob key file", path.display()))?;
    if file.r#type != KEY_TYPE {
        bail!(
            "{} holds a `{}` key, expected `{KEY_TYPE}`",
            path.display(),
            file.r#type
        );
    }
    let key: [u8; 32] = hex::decode(file.key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            eyre!(
                "key file {} has a malformed key (expected 64 hex digits)",
                path.display()
            )
        })?;
    Ok(DataKey::from_bytes(key))
}

/// `FILE.key`, next to `FILE`.
pub fn default_key_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".key");
    PathBuf::from(s)
}

/// Progress of a long transfer: an indicatif bar (bytes, rate, time left) on a terminal; in a
/// log (stderr not a terminal), an "N MiB / M MiB" line at most once a second.
pub struct Progress {
    what: &'static str,
    total: u64,
    done: u64,
    last: Instant,
    shown: bool,
    enabled: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// Shows progress when `enabled` and the transfer is at least 8 MiB.
    pub fn new(what: &'static str, total: u64, enabled: bool) -> Self {
        let enabled = enabled && total >= PROGRESS_MIN;
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let style = indicatif::ProgressStyle::with_template(
                "{msg:>11} [{bar:40.cyan/blue}] {binary_bytes}/{binary_total_bytes} \
                 {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total),
                indicatif::ProgressDrawTarget::stderr(),
            )
            .with_style(style)
            .with_message(what);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            what,
            total,
            done: 0,
            last: Instant::now(),
            shown: false,
            enabled,
            bar,
        }
    }

    pub fn add(&mut self, n: u64) {
        self.done += n;
        if let Some(bar) = &self.bar {
            bar.set_position(self.done);
        } else if self.enabled && self.last.elapsed() >= PROGRESS_EVERY {
            self.last = Instant::now();
            self.print();
        }
    }

    /// Completes the bar, or prints the final figure if any line was shown.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.set_position(self.done);
            bar.finish();
        } else if self.shown {
            self.print();
            self.shown = false;
        }
    }

    fn line(&self) -> String {
        const MIB: f64 = 1024.0 * 1024.0;
        let pct = if self.total == 0 {
            100
        } else {
            self.done.saturating_mul(100) / self.total
        };
        format!(
            "{}: {:.1} MiB / {:.1} MiB ({pct}%)",
            self.what,
            self.done as f64 / MIB,
            self.total as f64 / MIB
        )
    }

    fn print(&mut self) {
        eprintln!("{}", self.line());
        self.shown = true;
    }
}

/// Counts (and reports) the plaintext read from a file.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
    progress: Progress,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            let n = (buf.filled().len() - before) as u64;
            self.count.fetch_add(n, Ordering::Relaxed);
            if n == 0 {
                self.progress.finish();
            } else {
                self.progress.add(n);
            }
        }
        res
    }
}

/// What `pmr blob put` did.
#[derive(Clone, Debug, Serialize)]
pub struct PutOutcome {
    pub root_cid: String,
    /// Bytes stored on the node (ciphertext).
    pub size: u64,
    pub plaintext_size: u64,
    pub key_file: PathBuf,
}

/// Encrypts `file` with a fresh key written to `key_file` (default `FILE.key`, mode 0600;
/// never overwritten), uploads the ciphertext and returns the root CID. On failure the key
/// file is removed again.
pub async fn put_file(
    client: &PmrClient,
    file: &Path,
    key_file: Option<&Path>,
    progress: bool,
) -> Result<PutOutcome> {
    let f = tokio::fs::File::open(file)
        .await
        .wrap_err_with(|| format!("cannot open {}", file.display()))?;
    let len = f.metadata().await?.len();
    let key_path = key_file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_key_path(file));
    let key = DataKey::generate();
    write_key_file(&key_path, &key)?;
    let count = Arc::new(AtomicU64::new(0));
    let reader = Counting {
        inner: f,
        count: count.clone(),
        progress: Progress::new("uploading", len, progress),
    };
    let result = client
        .put_blob_reader(EncryptingReader::new(&key, reader))
        .await;
    let put = match result {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_file(&key_path);
            return Err(
                eyre::Report::new(e).wrap_err(format!("upload of {} failed", file.display()))
            );
        }
    };
    let plaintext_size = count.load(Ordering::Relaxed);
    if put.size != ciphertext_len(plaintext_size) {
        bail!(
            "the node stored {} bytes for {} bytes of plaintext, expected {}; was {} modified during the upload?",
            put.size,
            plaintext_size,
            ciphertext_len(plaintext_size),
            file.display()
        );
    }
    Ok(PutOutcome {
        root_cid: put.root_cid,
        size: put.size,
        plaintext_size,
        key_file: key_path,
    })
}

/// What `pmr blob get` did.
#[derive(Clone, Debug, Serialize)]
pub struct GetOutcome {
    pub root_cid: String,
    pub output: PathBuf,
    /// Plaintext bytes written.
    pub bytes: u64,
}

/// Downloads blob `cid`, decrypts it with the key in `key_file` and writes the plaintext to
/// `out` (mode 0600). `out` appears only when the whole blob has authenticated.
pub async fn get_file(
    client: &PmrClient,
    cid: &str,
    out: &Path,
    key_file: &Path,
    progress: bool,
) -> Result<GetOutcome> {
    let key = read_key_file(key_file)?;
    let mut download = client
        .get_blob(cid)
        .await
        .wrap_err_with(|| format!("cannot download blob {cid}"))?;
    let name = out
        .file_name()
        .ok_or_else(|| eyre!("{} is not a file name", out.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = out.with_file_name(format!(".{name}.partial"));
    let _ = std::fs::remove_file(&tmp);
    let mut opts = tokio::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(&tmp)
        .await
        .wrap_err_with(|| format!("cannot create {}", tmp.display()))?;
    let mut progress = Progress::new("downloading", download.size(), progress);
    let result = async {
        let mut dec = Decryptor::new(&key);
        let mut plain = Vec::new();
        let mut written = 0u64;
        while let Some(piece) = download.next().await {
            let piece = piece.wrap_err_with(|| format!("download of blob {cid} failed"))?;
            progress.add(piece.len() as u64);
            dec.update(&piece, &mut plain).wrap_err_with(|| {
                format!(
                    "blob {cid} does not decrypt with the key in {}",
                    key_file.display()
                )
            })?;
            f.write_all(&plain).await?;
            written += plain.len() as u64;
            plain.clear();
        }
        progress.finish();
        dec.finish(&mut plain).wrap_err_with(|| {
            format!(
                "blob {cid} does not decrypt with the key in {}",
                key_file.display()
            )
        })?;
        f.write_all(&plain).await?;
        written += plain.len() as u64;
        f.sync_all().await?;
        Ok::<_, eyre::Report>(written)
    }
    .await;
    drop(f);
    match result {
        Ok(bytes) => {
            std::fs::rename(&tmp, out)
                .wrap_err_with(|| format!("cannot move the plaintext to {}", out.display()))?;
            Ok(GetOutcome {
                root_cid: cid.to_string(),
                output: out.to_path_buf(),
                bytes,
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_bytes_and_skips_small_transfers() {
        const MIB: u64 = 1024 * 1024;
        let mut p = Progress::new("uploading", 64 * MIB, true);
        assert!(p.enabled);
        p.add(16 * MIB);
        p.add(16 * MIB);
        assert_eq!(p.line(), "uploading: 32.0 MiB / 64.0 MiB (50%)");
        p.finish();
        assert!(
            !Progress::new("uploading", MIB, true).enabled,
            "1 MiB shows nothing"
        );
        assert!(
            !Progress::new("uploading", 64 * MIB, false).enabled,
            "--quiet"
        );
        assert_eq!(
            Progress::new("x", 0, true).line(),
            "x: 0.0 MiB / 0.0 MiB (100%)"
        );
    }

    #[test]
    fn key_files_round_trip_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = default_key_path(&dir.path().join("scan.dcm"));
        assert_eq!(path.file_name().unwrap(), "scan.dcm.key");
        let key = DataKey::generate();
        write_key_file(&path, &key).unwrap();
        assert_eq!(read_key_file(&path).unwrap().as_bytes(), key.as_bytes());
        assert!(
            write_key_file(&path, &DataKey::generate()).is_err(),
            "overwrote a key file"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let node_key = dir.path().join("node_key.json");
        crate::keys::generate_node_key(&node_key).unwrap();
        let err = read_key_file(&node_key).unwrap_err().to_string();
        assert!(err.contains("not a blob key file"), "{err}");
    }
}
