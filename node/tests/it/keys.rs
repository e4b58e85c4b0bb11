//! Key files: private, never overwritten, and of the kind asked for.

use pmr_node::keys::{generate_custody_key, generate_node_key, load_custody_key, load_node_key};
use pmr_shares::X25519PublicKey;

#[test]
fn key_files_are_private_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys/node_key.json");
    let key = generate_node_key(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert_eq!(load_node_key(&path).unwrap().public_key(), key.public_key());
    // Never overwritten.
    assert!(generate_node_key(&path).is_err());
    // A custody key round-trips; the two kinds are not confused.
    let custody = dir.path().join("keys/custody_key.json");
    let public = generate_custody_key(&custody).unwrap();
    assert_eq!(
        X25519PublicKey::from(&load_custody_key(&custody).unwrap()),
        public
    );
    let err = match load_custody_key(&path) {
        Ok(_) => panic!("a node key loaded as a custody key"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("expected x25519"), "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_node_key(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
