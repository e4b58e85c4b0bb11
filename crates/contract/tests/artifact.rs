//! The committed contract artifact is exactly what the sources compile to.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn committed_artifact_matches_a_fresh_compile() {
    // The runtime variable (set by cargo and nextest) names this checkout; the compile-time one
    // may name another checkout that shares the target directory.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let contracts = manifest_dir.join("../../evm-contracts");
    assert!(
        contracts.join("node_modules/solc").is_dir(),
        "evm-contracts/node_modules is missing: run `npm ci --prefix evm-contracts` (needs node and \
         the npm registry) before `cargo test -p pmr-contract`"
    );
    let out = Command::new("node")
        .arg(contracts.join("compile.js"))
        .arg("--check")
        .output()
        .expect("cannot run `node`: install Node.js 18 or newer");
    assert!(
        out.status.success(),
        "evm-contracts/compile.js --check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bindings_are_generated_from_the_committed_artifact() {
    let artifact: serde_json::Value =
        serde_json::from_str(pmr_contract::PMR_ARTIFACT_JSON).unwrap();
    let runtime = artifact["deployedBytecode"].as_str().unwrap();
    assert_eq!(
        format!("0x{}", hex::encode(&pmr_contract::PMR::DEPLOYED_BYTECODE)),
        runtime,
        "the sol! bindings and include_str! read the same artifact"
    );
    assert_eq!(artifact["compiler"]["settings"]["evmVersion"], "prague");
}
