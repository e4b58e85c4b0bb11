//! Files that hold secrets: created once with mode 0600 (never overwritten), fsynced, and
//! refused on read when anyone but their owner can read them.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a secret file cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The file cannot be created (it may exist already: secret files are never overwritten).
    #[error("cannot create key file {} (does it exist already?): {source}", path.display())]
    Create {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Group or others may read the file.
    #[error(
        "key file {} has permissions {mode:o}; it must be readable by its owner only: chmod 600 {}",
        path.display(),
        path.display()
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file cannot be read.
    #[error("cannot read key file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// Writes `contents` to a new file readable only by its owner (creating its directory).
pub fn write_secret_file(path: &Path, contents: &[u8]) -> Result<(), SecretFileError> {
    let create = |source| SecretFileError::Create {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(create)?;
    }
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(create)?;
    f.write_all(contents).map_err(create)?;
    f.sync_all().map_err(create)
}

/// Reads a secret file, refusing one that group or others can read.
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>, SecretFileError> {
    let read = |source| SecretFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretFileError::Exposed {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    std::fs::read(path).map_err(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_private_never_overwritten_and_refused_when_exposed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/a.json");
        write_secret_file(&path, b"secret").unwrap();
        assert_eq!(read_secret_file(&path).unwrap(), b"secret");
        assert!(matches!(
            write_secret_file(&path, b"other"),
            Err(SecretFileError::Create { .. })
        ));
        assert_eq!(read_secret_file(&path).unwrap(), b"secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
            let err = read_secret_file(&path).unwrap_err().to_string();
            assert!(err.contains("chmod 600"), "{err}");
        }
    }
}
