// node --test loadtest/test/: the Artillery guard refuses every non-loopback
// connection, and with WSRELAY_ARTILLERY_ALLOW_REMOTE=1 lets through only the
// host of WSRELAY_URL. Each case runs in its own node process (the guard is
// configured when it is loaded). Addresses from TEST-NET ranges: nothing is
// ever reached; a guarded refusal is told apart by its message.
'use strict';
const { test } = require('node:test');
const assert = require('node:assert');
const { execFileSync } = require('node:child_process');
const path = require('node:path');

const GUARD = path.join(__dirname, '..', 'artillery-no-telemetry.js');

// Connects to host:port and prints "guard" if the guard refused it,
// "passed" if it reached the network stack (and failed or timed out there).
const PROBE = `
const net = require('net');
const s = net.connect({ host: process.argv[1], port: 9 });
const done = (what) => { console.log(what); process.exit(0); };
s.on('error', (e) => done(/artillery-guard/.test(e.message) ? 'guard' : 'passed'));
s.on('connect', () => done('passed'));
setTimeout(() => done('passed'), 300).unref();
`;

function probe(host, env) {
  return execFileSync(process.execPath, ['--require', GUARD, '-e', PROBE, host], {
    env: { PATH: process.env.PATH, ...env },
    encoding: 'utf8',
  }).trim();
}

test('loopback passes, anything else is refused by default', () => {
  assert.strictEqual(probe('127.0.0.1', {}), 'passed');
  assert.strictEqual(probe('192.0.2.10', { WSRELAY_URL: 'ws://192.0.2.10:8080/ws/echo' }), 'guard');
});

test('ALLOW_REMOTE lets through the target host only', () => {
  const env = { WSRELAY_ARTILLERY_ALLOW_REMOTE: '1', WSRELAY_URL: 'wss://192.0.2.10:443/ws/echo' };
  assert.strictEqual(probe('192.0.2.10', env), 'passed');
  assert.strictEqual(probe('198.51.100.7', env), 'guard');
  assert.strictEqual(probe('127.0.0.1', env), 'passed');
});

test('ALLOW_REMOTE without a parsable WSRELAY_URL allows nothing more', () => {
  assert.strictEqual(probe('192.0.2.10', { WSRELAY_ARTILLERY_ALLOW_REMOTE: '1', WSRELAY_URL: 'not a url' }), 'guard');
});
