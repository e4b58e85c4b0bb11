#!/usr/bin/env node
// Compiles PMR.sol with solc-js (standard JSON) and writes artifacts/PMR.json.
//
//   node compile.js          write the artifact
//   node compile.js --check  exit 1 when the committed artifact differs from a fresh compile
//
// The output is deterministic: same sources, same compiler, same settings => same bytes.
"use strict";

const fs = require("fs");
const path = require("path");

const ROOT = __dirname;
const SOURCE = "PMR.sol";
const CONTRACT = "PMR";
const ARTIFACT = path.join(ROOT, "artifacts", "PMR.json");
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

const settings = {
  optimizer: { enabled: true, runs: 10000 },
  viaIR: true,
  evmVersion: "prague",
  metadata: { bytecodeHash: "none" },
  outputSelection: {
    [SOURCE]: {
      [CONTRACT]: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "storageLayout"],
    },
  },
};

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

function compile() {
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
const fresh = compile();
if (check) {
  let committed;
  try {
    committed = fs.readFileSync(ARTIFACT, "utf8");
  } catch (e) {
    fail(`${ARTIFACT} is missing: run \`node evm-contracts/compile.js\` and commit it`);
  }
  if (committed !== fresh) {
    fail(
      `${path.relative(process.cwd(), ARTIFACT)} differs from what PMR.sol compiles to: ` +
        "run `node evm-contracts/compile.js` and commit the artifact",
    );
  }
  process.stdout.write(`artifacts/PMR.json is up to date (solc ${solc.version()})\n`);
} else {
  fs.mkdirSync(path.dirname(ARTIFACT), { recursive: true });
  fs.writeFileSync(ARTIFACT, fresh);
  const size = (JSON.parse(fresh).deployedBytecode.length - 2) / 2;
  process.stdout.write(`wrote ${path.relative(process.cwd(), ARTIFACT)} (runtime code ${size} bytes)\n`);
}
