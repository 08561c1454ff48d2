// Compiles contracts/*.sol with the pinned solcjs (npm "solc", see package.json) and writes one
// artifact per contract, {contractName, compiler, settings, abi, bytecode, deployedBytecode},
// to the directory given as the first argument (default: ledger_client/backends/evm_artifacts).
// The same source and compiler always give the same bytes: a test recompiles and compares.
import { createRequire } from "node:module";
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");

const here = dirname(fileURLToPath(import.meta.url));
const outDir = resolve(process.argv[2] ?? join(here, "..", "ledger_client", "backends", "evm_artifacts"));

// "london": no PUSH0 (Shanghai) so the bytecode also runs on permissioned Besu/GoQuorum
// networks whose genesis stops at London; newer nodes (anvil) run it unchanged.
const settings = {
  evmVersion: "london",
  optimizer: { enabled: true, runs: 200 },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

const sources = {};
for (const name of readdirSync(here).filter((f) => f.endsWith(".sol")).sort()) {
  sources[name] = { content: readFileSync(join(here, name), "utf8") };
}
const output = JSON.parse(solc.compile(JSON.stringify({ language: "Solidity", sources, settings })));
const errors = (output.errors ?? []).filter((e) => e.severity === "error");
for (const e of output.errors ?? []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);

mkdirSync(outDir, { recursive: true });
for (const [file, contracts] of Object.entries(output.contracts)) {
  for (const [contractName, c] of Object.entries(contracts)) {
    const artifact = {
      contractName,
      source: `contracts/${file}`,
      compiler: `solc ${solc.version()}`,
      settings: { evmVersion: settings.evmVersion, optimizer: settings.optimizer },
      abi: c.abi,
      bytecode: "0x" + c.evm.bytecode.object,
      deployedBytecode: "0x" + c.evm.deployedBytecode.object,
    };
    writeFileSync(join(outDir, `${contractName}.json`), JSON.stringify(artifact, null, 2) + "\n");
    console.log(`${contractName}: ${c.evm.deployedBytecode.object.length / 2} bytes deployed`);
  }
}
