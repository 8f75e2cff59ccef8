#!/usr/bin/env -S node --no-warnings
// Cargo runner for wasm32-wasip1 (see .cargo/config.toml): runs a WASI preview1
// binary under Node's built-in `node:wasi`, so `cargo test --target wasm32-wasip1`
// needs no extra wasm runtime.
//
//   wasi-runner.mjs FILE.wasm [ARGS...]
//
// - ARGS are passed through (argv[0] is FILE.wasm), the environment too.
// - `.` and the current directory (cargo runs tests from the package root) are
//   preopened, so relative and absolute paths under it both work.
// - The exit status is the program's exit code. A trap (a panic under
//   panic=abort ends in `unreachable`) or any other failure exits 134, like
//   SIGABRT, so it can never be mistaken for success. Set WASI_RUNNER_STACK=1
//   to print the wasm stack of a trap.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import process from 'node:process';

const [file, ...args] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: wasi-runner.mjs FILE.wasm [ARGS...]\n');
  process.exit(2);
}

let code;
try {
  const cwd = process.cwd();
  const wasi = new WASI({
    version: 'preview1',
    args: [file, ...args],
    env: process.env,
    preopens: { '.': cwd, [cwd]: cwd },
    returnOnExit: true,
  });
  const module = await WebAssembly.compile(await readFile(file));
  const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
  code = wasi.start(instance);
} catch (err) {
  const what = err instanceof WebAssembly.RuntimeError ? 'wasm trap' : 'wasi-runner error';
  // The full wasm stack is long; print it only when asked for.
  const detail = process.env.WASI_RUNNER_STACK && err && err.stack ? err.stack : String(err);
  process.stderr.write(`${what} in ${file}: ${detail}\n`);
  code = 134;
}
process.exitCode = typeof code === 'number' ? code : 134;
