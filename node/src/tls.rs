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

/// The CA key in `ca_key` and the CA certificate rebuilt from it.
fn load_ca(ca_key: &Path) -> Result<(KeyPair, rcgen::Certificate)> {
    let ca_pair = KeyPair::from_pem(
        std::str::from_utf8(&read_secret_file(ca_key)?)
            .map_err(|_| eyre!("{} is not a PEM key", ca_key.display()))?,
    )
    .wrap_err_with(|| format!("{} is not a PEM key", ca_key.display()))?;
    let issuer = ca_params()
        .self_signed(&ca_pair)
        .wrap_err("cannot rebuild the CA certificate from its key")?;
    Ok((ca_pair, issuer))
}

/// The parameters of a node certificate naming `names` (DNS names) and `ips`.
fn node_params(names: &[String], ips: &[IpAddr]) -> Result<CertificateParams> {
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
    Ok(params)
}

/// A node certificate for `names` (DNS names) and `ips`, signed by the CA key in `ca_key`,
/// written to `cert` with its key (mode 0600) at `key`. The CA holder makes the node's key
/// here: for a network of one organization (a development chain). Between organizations use
/// [`request`] and [`sign`], which leave the node's key on its host.
pub fn issue(
    ca_key: &Path,
    names: &[String],
    ips: &[IpAddr],
    cert: &Path,
    key: &Path,
) -> Result<()> {
    let (ca_pair, issuer) = load_ca(ca_key)?;
    let params = node_params(names, ips)?;
    let pair = KeyPair::generate().wrap_err("cannot generate the node's TLS key")?;
    let signed = params
        .signed_by(&pair, &issuer, &ca_pair)
        .wrap_err("cannot sign the node certificate")?;
    write_secret_file(key, pair.serialize_pem().as_bytes())?;
    write_public(cert, signed.pem().as_bytes())
}

/// A certificate request: what the CA holder needs to sign a node's certificate, and nothing
/// secret (the node's TLS key stays on its host).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct CertRequest {
    /// The node's ECDSA P-256 public key, an uncompressed point (65 bytes), hex.
    pub public_key: String,
    /// DNS names clients reach the node by.
    pub hosts: Vec<String>,
    /// Addresses clients reach the node by.
    pub ips: Vec<IpAddr>,
}

/// The public key of a [`CertRequest`], for rcgen.
struct RequestedKey(Vec<u8>);

impl rcgen::PublicKeyData for RequestedKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// On the node's host: a new TLS key at `key` (mode 0600) and the request for its certificate
/// at `out` (public: send it to the CA holder).
pub fn request(names: &[String], ips: &[IpAddr], key: &Path, out: &Path) -> Result<()> {
    node_params(names, ips)?;
    let pair = KeyPair::generate().wrap_err("cannot generate the node's TLS key")?;
    let req = CertRequest {
        public_key: hex::encode(pair.public_key_raw()),
        hosts: names.to_vec(),
        ips: ips.to_vec(),
    };
    write_secret_file(key, pair.serialize_pem().as_bytes())?;
    write_public(out, (serde_json::to_string_pretty(&req)? + "\n").as_bytes())
}

/// At the CA holder: the certificate for the request at `request`, signed by the CA key in
/// `ca_key`, written to `cert`.
pub fn sign(ca_key: &Path, request: &Path, cert: &Path) -> Result<()> {
    let text = std::fs::read_to_string(request)
        .wrap_err_with(|| format!("cannot read {}", request.display()))?;
    let req: CertRequest = serde_json::from_str(&text)
        .wrap_err_with(|| format!("{} is not a certificate request", request.display()))?;
    let public = hex::decode(&req.public_key)
        .ok()
        .filter(|k| k.len() == 65 && k[0] == 4)
        .ok_or_else(|| {
            eyre!(
                "{}: the public key is not an uncompressed P-256 point",
                request.display()
            )
        })?;
    let (ca_pair, issuer) = load_ca(ca_key)?;
    let signed = node_params(&req.hosts, &req.ips)?
        .signed_by(&RequestedKey(public), &issuer, &ca_pair)
        .wrap_err("cannot sign the node certificate")?;
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
