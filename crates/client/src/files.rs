//! Files stored as ciphertext through a node (`pmr blob put|get`).
//!
//! [`put_file`] encrypts a file with a fresh [`DataKey`] (XChaCha20-Poly1305 segments of
//! `pmr-blob`), uploads only the ciphertext and writes the key to a file of mode 0600;
//! [`get_file`] downloads, authenticates and decrypts into a private temporary file that is
//! renamed into place only once every segment has verified.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::StreamExt;
use pmr_blob::{ciphertext_len, CryptoError, DataKey, Decryptor, EncryptingReader};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use crate::client::{ClientError, PmrClient};
use crate::secret_file::{read_secret_file, write_secret_file, SecretFileError};

/// `type` of a blob key file.
pub const KEY_TYPE: &str = "pmr-blob-key/xchacha20poly1305-v1";

/// Why storing or reading a file failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A local file cannot be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot open", "cannot create", ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The key file.
    #[error(transparent)]
    Secret(#[from] SecretFileError),
    /// The key file is not a blob key file.
    #[error("{} {reason}", path.display())]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The node refused or failed.
    #[error("{what}: {source}")]
    Node {
        /// What failed.
        what: String,
        /// The node's error.
        #[source]
        source: ClientError,
    },
    /// The node stored another size than the ciphertext of the bytes read.
    #[error(
        "the node stored {stored} bytes for {plaintext} bytes of plaintext, expected {expected}; \
         was {} modified during the upload?",
        file.display()
    )]
    SizeMismatch {
        /// The file uploaded.
        file: PathBuf,
        /// Bytes the node stored.
        stored: u64,
        /// Plaintext bytes read.
        plaintext: u64,
        /// Ciphertext bytes expected.
        expected: u64,
    },
    /// The blob does not decrypt with the key.
    #[error("blob {cid} does not decrypt with the key in {}: {source}", key_file.display())]
    Decrypt {
        /// The blob.
        cid: String,
        /// The key file.
        key_file: PathBuf,
        /// Which segment failed, and how.
        #[source]
        source: CryptoError,
    },
}

/// Progress of a transfer: told the total, every piece, and the end.
pub trait TransferProgress: Send {
    /// The transfer's size in bytes.
    fn begin(&mut self, _total: u64) {}
    /// `bytes` more moved.
    fn add(&mut self, bytes: u64);
    /// The transfer completed.
    fn finish(&mut self) {}
}

/// No progress reports.
impl TransferProgress for () {
    fn add(&mut self, _bytes: u64) {}
}

#[derive(Serialize, Deserialize)]
struct BlobKeyFile {
    r#type: String,
    /// Hex of the 32-byte data-encryption key.
    key: String,
    note: String,
}

/// Writes a new key file (mode 0600); an existing file is never overwritten.
pub fn write_key_file(path: &Path, key: &DataKey) -> Result<(), FileError> {
    let file = BlobKeyFile {
        r#type: KEY_TYPE.into(),
        key: hex::encode(key.as_bytes()),
        note: "data-encryption key of a PMR blob: whoever holds it can read the blob".into(),
    };
    let json = serde_json::to_string_pretty(&file).map_err(|e| FileError::KeyFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(write_secret_file(path, json.as_bytes())?)
}

/// Reads a key file written by [`write_key_file`], refusing one others can read.
pub fn read_key_file(path: &Path) -> Result<DataKey, FileError> {
    let bad = |reason: String| FileError::KeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = read_secret_file(path)?;
    let file: BlobKeyFile =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("is not a blob key file: {e}")))?;
    if file.r#type != KEY_TYPE {
        return Err(bad(format!(
            "holds a `{}` key, expected `{KEY_TYPE}`",
            file.r#type
        )));
    }
    let key: [u8; 32] = hex::decode(file.key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("has a malformed key (expected 64 hex digits)".into()))?;
    Ok(DataKey::from_bytes(key))
}

/// `FILE.key`, next to `FILE`.
pub fn default_key_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".key");
    PathBuf::from(s)
}

/// Counts (and reports) the plaintext read from a file.
struct Counting<R, P> {
    inner: R,
    count: Arc<AtomicU64>,
    progress: P,
}

impl<R: AsyncRead + Unpin, P: TransferProgress + Unpin> AsyncRead for Counting<R, P> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
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

/// What [`put_file`] did.
#[derive(Clone, Debug, Serialize)]
pub struct PutOutcome {
    /// The blob's root CID.
    pub root_cid: String,
    /// Bytes stored on the node (ciphertext).
    pub size: u64,
    /// Bytes of the file.
    pub plaintext_size: u64,
    /// Where the key was written.
    pub key_file: PathBuf,
}

/// Encrypts `file` with a fresh key written to `key_file` (default `FILE.key`, mode 0600;
/// never overwritten), uploads the ciphertext and returns the root CID. On failure the key
/// file is removed again.
pub async fn put_file(
    client: &PmrClient,
    file: &Path,
    key_file: Option<&Path>,
    mut progress: impl TransferProgress + Unpin + 'static,
) -> Result<PutOutcome, FileError> {
    let io = |what, source| FileError::Io {
        what,
        path: file.to_path_buf(),
        source,
    };
    let f = tokio::fs::File::open(file)
        .await
        .map_err(|e| io("cannot open", e))?;
    let len = f.metadata().await.map_err(|e| io("cannot read", e))?.len();
    let key_path = key_file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_key_path(file));
    let key = DataKey::generate();
    write_key_file(&key_path, &key)?;
    progress.begin(len);
    let count = Arc::new(AtomicU64::new(0));
    let reader = Counting {
        inner: f,
        count: count.clone(),
        progress,
    };
    let put = match client
        .put_blob_reader(EncryptingReader::new(&key, reader))
        .await
    {
        Ok(p) => p,
        Err(source) => {
            let _ = std::fs::remove_file(&key_path);
            return Err(FileError::Node {
                what: format!("upload of {} failed", file.display()),
                source,
            });
        }
    };
    let plaintext_size = count.load(Ordering::Relaxed);
    if put.size != ciphertext_len(plaintext_size) {
        return Err(FileError::SizeMismatch {
            file: file.to_path_buf(),
            stored: put.size,
            plaintext: plaintext_size,
            expected: ciphertext_len(plaintext_size),
        });
    }
    Ok(PutOutcome {
        root_cid: put.root_cid,
        size: put.size,
        plaintext_size,
        key_file: key_path,
    })
}

/// What [`get_file`] did.
#[derive(Clone, Debug, Serialize)]
pub struct GetOutcome {
    /// The blob's root CID.
    pub root_cid: String,
    /// Where the plaintext was written.
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
    mut progress: impl TransferProgress,
) -> Result<GetOutcome, FileError> {
    let key = read_key_file(key_file)?;
    let mut download = client
        .get_blob(cid)
        .await
        .map_err(|source| FileError::Node {
            what: format!("cannot download blob {cid}"),
            source,
        })?;
    let name = out
        .file_name()
        .ok_or_else(|| FileError::KeyFile {
            path: out.to_path_buf(),
            reason: "is not a file name".into(),
        })?
        .to_string_lossy()
        .into_owned();
    let tmp = out.with_file_name(format!(".{name}.partial"));
    let io = |what, source| FileError::Io {
        what,
        path: tmp.clone(),
        source,
    };
    let _ = std::fs::remove_file(&tmp);
    let mut opts = tokio::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(&tmp).await.map_err(|e| io("cannot create", e))?;
    progress.begin(download.size());
    let decrypt = |source| FileError::Decrypt {
        cid: cid.to_string(),
        key_file: key_file.to_path_buf(),
        source,
    };
    let result = async {
        let mut dec = Decryptor::new(&key);
        let mut plain = Vec::new();
        let mut written = 0u64;
        while let Some(piece) = download.next().await {
            let piece = piece.map_err(|source| FileError::Node {
                what: format!("download of blob {cid} failed"),
                source,
            })?;
            progress.add(piece.len() as u64);
            dec.update(&piece, &mut plain).map_err(decrypt)?;
            f.write_all(&plain)
                .await
                .map_err(|e| io("cannot write", e))?;
            written += plain.len() as u64;
            plain.clear();
        }
        progress.finish();
        dec.finish(&mut plain).map_err(decrypt)?;
        f.write_all(&plain)
            .await
            .map_err(|e| io("cannot write", e))?;
        written += plain.len() as u64;
        f.sync_all().await.map_err(|e| io("cannot write", e))?;
        Ok::<_, FileError>(written)
    }
    .await;
    drop(f);
    match result {
        Ok(bytes) => {
            std::fs::rename(&tmp, out).map_err(|source| FileError::Io {
                what: "cannot move the plaintext to",
                path: out.to_path_buf(),
                source,
            })?;
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
        let other = dir.path().join("other.json");
        write_secret_file(&other, br#"{"type":"ed25519","secret":"00"}"#).unwrap();
        let err = read_key_file(&other).unwrap_err().to_string();
        assert!(err.contains("not a blob key file"), "{err}");
    }
}
