#!/usr/bin/env node
// Compiles PMR.sol (and the benchmark reference bench/PlainMint.sol) with solc-js (standard
// JSON) and writes artifacts/PMR.json (and artifacts/PlainMint.json).
//
//   node compile.js          write the artifacts
//   node compile.js --check  exit 1 when a committed artifact differs from a fresh compile
//
// The output is deterministic: same sources, same compiler, same settings => same bytes.
"use strict";

const fs = require("fs");
const path = require("path");

const ROOT = __dirname;
// PlainMint is never deployed on a PMR network: it is the plain OpenZeppelin v5 mint that the
// execution benchmark runs beside PMR's as a reference.
const TARGETS = [
  { source: "PMR.sol", contract: "PMR", artifact: path.join(ROOT, "artifacts", "PMR.json") },
  {
    source: "bench/PlainMint.sol",
    contract: "PlainMint",
    artifact: path.join(ROOT, "artifacts", "PlainMint.json"),
  },
];
const OZ_PREFIX = "@openzeppelin/contracts/";
const EXPECTED_SOLC = "0.8.37";

function fail(message) {
  process.stderr.write(`compile.js: ${message}\n`);
  process.exit(1);
}

let solc;
try {
  solc = require("solc");
} catch (e) {
  fail("solc is not installed: run `npm ci --prefix evm-contracts` first");
}

const settingsFor = (SOURCE, CONTRACT) => ({
  optimizer: { enabled: true, runs: 10000 },
  viaIR: true,
  evmVersion: "prague",
  metadata: { bytecodeHash: "none" },
  outputSelection: {
    [SOURCE]: {
      [CONTRACT]: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "storageLayout"],
    },
  },
});

function findImports(importPath) {
  if (importPath.startsWith(OZ_PREFIX)) {
    const file = path.join(ROOT, "node_modules", importPath);
    try {
      return { contents: fs.readFileSync(file, "utf8") };
    } catch (e) {
      return { error: `cannot read ${file}: run \`npm ci --prefix evm-contracts\`` };
    }
  }
  return { error: `import ${importPath} is outside @openzeppelin/contracts/` };
}

function compile(SOURCE, CONTRACT) {
  const settings = settingsFor(SOURCE, CONTRACT);
  const version = solc.version();
  if (!version.startsWith(EXPECTED_SOLC + "+")) {
    fail(`solc ${version} found, ${EXPECTED_SOLC} required: run \`npm ci --prefix evm-contracts\``);
  }
  const input = {
    language: "Solidity",
    sources: { [SOURCE]: { content: fs.readFileSync(path.join(ROOT, SOURCE), "utf8") } },
    settings,
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  // Warnings fail the build too: the contract compiles clean.
  const errors = (output.errors || []).filter((e) => e.severity !== "info");
  for (const e of output.errors || []) {
    process.stderr.write(e.formattedMessage || e.message);
  }
  if (errors.length > 0) {
    fail(`${errors.length} compilation error(s) or warning(s)`);
  }
  const c = output.contracts[SOURCE][CONTRACT];
  const storageLayout = c.storageLayout.storage.map((s) => ({
    label: s.label,
    slot: s.slot,
    offset: s.offset,
    contract: s.contract,
  }));
  const artifact = {
    contractName: CONTRACT,
    compiler: {
      version,
      settings: {
        optimizer: settings.optimizer,
        viaIR: settings.viaIR,
        evmVersion: settings.evmVersion,
        metadata: settings.metadata,
      },
    },
    abi: c.abi,
    bytecode: "0x" + c.evm.bytecode.object,
    deployedBytecode: "0x" + c.evm.deployedBytecode.object,
    storageLayout,
  };
  return JSON.stringify(artifact, null, 2) + "\n";
}

const check = process.argv.includes("--check");
for (const t of TARGETS) {
  const fresh = compile(t.source, t.contract);
  const name = path.relative(process.cwd(), t.artifact);
  if (check) {
    let committed;
    try {
      committed = fs.readFileSync(t.artifact, "utf8");
    } catch (e) {
      fail(`${t.artifact} is missing: run \`node evm-contracts/compile.js\` and commit it`);
    }
    if (committed !== fresh) {
      fail(
        `${name} differs from what ${t.source} compiles to: ` +
          "run `node evm-contracts/compile.js` and commit the artifact",
      );
    }
    process.stdout.write(`${name} is up to date (solc ${solc.version()})\n`);
  } else {
    fs.mkdirSync(path.dirname(t.artifact), { recursive: true });
    fs.writeFileSync(t.artifact, fresh);
    const size = (JSON.parse(fresh).deployedBytecode.length - 2) / 2;
    process.stdout.write(`wrote ${name} (runtime code ${size} bytes)\n`);
  }
}
