//! Key files: private, never overwritten, of the kind asked for; the custodian keystore is
//! encrypted at rest and opens only under its passphrase.

use pmr_node::config::Home;
use pmr_node::keys::{
    custodian_public, generate_custodian, generate_node_key, load_custodian_keys, load_node_key,
};
use pmr_shares::X25519PublicKey;

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn key_files_are_private_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys/node_key.json");
    let key = generate_node_key(&path).unwrap();
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
    assert_eq!(load_node_key(&path).unwrap().public_key(), key.public_key());
    // Never overwritten.
    assert!(generate_node_key(&path).is_err());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_node_key(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}

fn refusal(r: eyre::Result<impl Sized>) -> String {
    match r {
        Ok(_) => panic!("the keystore opened"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn custodian_keystore_is_encrypted_and_needs_its_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::new(dir.path());
    let path = home.custodian_keystore();
    let (operator, public) = generate_custodian(&path, "correct horse battery").unwrap();
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
    assert_eq!(custodian_public(&path).unwrap(), (operator, public));
    // Never overwritten.
    assert!(generate_custodian(&path, "another").is_err());

    // The secrets are not on disk in the clear: the file is JSON whose only hex of 32 bytes
    // or more besides the public parts is the ciphertext, and the loaded secret's bytes do
    // not appear in it.
    let passfile = dir.path().join("keys/passphrase");
    pmr_client::secret_file::write_secret_file(&passfile, b"correct horse battery\n").unwrap();
    let (secret, wallet) =
        load_custodian_keys(&home, Some(std::path::Path::new("keys/passphrase"))).unwrap();
    let secret = secret.expect("custody key");
    assert_eq!(X25519PublicKey::from(&secret), public);
    assert_eq!(wallet.expect("operator account").address(), operator);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(&hex::encode(secret.to_bytes())));
    assert!(!text.contains(&hex::encode(secret.to_bytes()).to_uppercase()));

    // Without a passphrase the node refuses to start, and says where to give one.
    let err = refusal(load_custodian_keys(&home, None));
    assert!(err.contains("PMR_KEY_PASSPHRASE"), "{err}");
    // A wrong passphrase is refused.
    let wrong = dir.path().join("keys/wrong");
    pmr_client::secret_file::write_secret_file(&wrong, b"incorrect").unwrap();
    let err = refusal(load_custodian_keys(
        &home,
        Some(std::path::Path::new("keys/wrong")),
    ));
    assert!(err.contains("passphrase"), "{err}");
    // A passphrase file others can read is refused like any key file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = refusal(load_custodian_keys(
            &home,
            Some(std::path::Path::new("keys/passphrase")),
        ));
        assert!(err.contains("chmod 600"), "{err}");
    }
}
