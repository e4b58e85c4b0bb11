//! The network's TLS certificates: a CA (its key stays with whoever runs it, never on a
//! validator), and each node's certificate, signed by it, naming the node's host names and
//! addresses. Clients pin the CA: a man in the middle without a certificate the CA signed
//! cannot read or rewrite the API.

use std::net::IpAddr;
use std::path::Path;

use eyre::{eyre, Context, Result};
use pmr_client::secret_file::{read_secret_file, write_secret_file};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// The CA's subject. A node certificate names it as issuer; the CA certificate is rebuilt from
/// it and the CA key to sign (the signature only depends on the subject and the key).
const CA_NAME: &str = "PMR network CA";

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_after = rcgen::date_time_ymd(2046, 1, 1);
    params
}

/// A new CA: its certificate (PEM) at `cert` and its key (PEM, mode 0600) at `key`.
pub fn new_ca(cert: &Path, key: &Path) -> Result<()> {
    let pair = KeyPair::generate().wrap_err("cannot generate the CA key")?;
    let ca = ca_params()
        .self_signed(&pair)
        .wrap_err("cannot sign the CA certificate")?;
    write_secret_file(key, pair.serialize_pem().as_bytes())?;
    write_public(cert, ca.pem().as_bytes())
}

/// A node certificate for `names` (DNS names) and `ips`, signed by the CA key in `ca_key`,
/// written to `cert` with its key (mode 0600) at `key`.
pub fn issue(
    ca_key: &Path,
    names: &[String],
    ips: &[IpAddr],
    cert: &Path,
    key: &Path,
) -> Result<()> {
    let ca_pair = KeyPair::from_pem(
        std::str::from_utf8(&read_secret_file(ca_key)?)
            .map_err(|_| eyre!("{} is not a PEM key", ca_key.display()))?,
    )
    .wrap_err_with(|| format!("{} is not a PEM key", ca_key.display()))?;
    let issuer = ca_params()
        .self_signed(&ca_pair)
        .wrap_err("cannot rebuild the CA certificate from its key")?;
    if names.is_empty() && ips.is_empty() {
        eyre::bail!("a node certificate needs at least one host name or IP address");
    }
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| ips[0].to_string()),
    );
    params.distinguished_name = dn;
    params.subject_alt_names = names
        .iter()
        .map(|n| {
            Ok(SanType::DnsName(n.clone().try_into().map_err(|e| {
                eyre!("`{n}` is not a valid DNS name for a certificate: {e}")
            })?))
        })
        .chain(ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
        .collect::<Result<_>>()?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let pair = KeyPair::generate().wrap_err("cannot generate the node's TLS key")?;
    let signed = params
        .signed_by(&pair, &issuer, &ca_pair)
        .wrap_err("cannot sign the node certificate")?;
    write_secret_file(key, pair.serialize_pem().as_bytes())?;
    write_public(cert, signed.pem().as_bytes())
}

/// Writes a public file (certificate) that does not exist yet.
fn write_public(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .wrap_err_with(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, bytes))
        .wrap_err_with(|| format!("cannot create {} (does it exist already?)", path.display()))
}
