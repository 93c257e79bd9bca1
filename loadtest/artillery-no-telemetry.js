// Preloaded into every Artillery process (NODE_OPTIONS=--require=…) by
// loadtest/artillery.sh so that nothing leaves loopback:
//
// 1. Artillery 2 sends usage telemetry to PostHog even when
//    ARTILLERY_DISABLE_TELEMETRY is set (it only anonymises the event). The
//    `posthog-node` module is replaced by a client that drops every event.
// 2. As a second line, any TCP connection to a host that is not loopback is
//    refused in-process (an error on that socket), so a telemetry path we have
//    not seen, an update check or a plugin cannot reach the network either.
//
// For a remote wsrelay, WSRELAY_ARTILLERY_ALLOW_REMOTE=1 lets connections
// through to the host of WSRELAY_URL — that host only; every other
// non-loopback connection is still refused, and telemetry is still dropped.
//
// With WSRELAY_ARTILLERY_GUARD_REPORT=1 it prints, at exit, one line:
//   artillery-guard: telemetry events dropped=N, outbound connections blocked=M
'use strict';

const Module = require('module');
const net = require('net');

let dropped = 0;
let blocked = 0;

class NoTelemetry {
  capture() {
    dropped += 1;
  }
  identify() {}
  alias() {}
  groupIdentify() {}
  flush() {
    return Promise.resolve();
  }
  shutdown() {
    return Promise.resolve();
  }
  shutdownAsync() {
    return Promise.resolve();
  }
  on() {
    return this;
  }
}

const stub = { PostHog: NoTelemetry, default: NoTelemetry };
const originalLoad = Module._load;
Module._load = function load(request, parent, isMain) {
  if (request === 'posthog-node') return stub;
  return originalLoad.call(this, request, parent, isMain);
};

const LOOPBACK = /^(localhost|127\.\d+\.\d+\.\d+|::1|::ffff:127\.\d+\.\d+\.\d+)$/i;

function targetHost(args) {
  const [first] = args;
  if (Array.isArray(first)) return targetHost(first); // internal normalized form
  if (first && typeof first === 'object') {
    if (first.path && first.host === undefined && first.port === undefined) return null; // unix socket
    return first.host || 'localhost';
  }
  if (typeof first === 'number' || /^\d+$/.test(String(first))) {
    return typeof args[1] === 'string' ? args[1] : 'localhost';
  }
  return null; // a unix socket path
}

// The one remote host allowed (WSRELAY_ARTILLERY_ALLOW_REMOTE=1): the
// target's, from WSRELAY_URL; lower case, without IPv6 brackets.
function allowedRemote() {
  if (process.env.WSRELAY_ARTILLERY_ALLOW_REMOTE !== '1') return null;
  try {
    return new URL(process.env.WSRELAY_URL || '').hostname.replace(/^\[|\]$/g, '').toLowerCase();
  } catch (_) {
    return null;
  }
}
const ALLOWED = allowedRemote();

const originalConnect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function connect(...args) {
  const host = targetHost(args);
  const allowed = host === null || LOOPBACK.test(host) || (ALLOWED !== null && String(host).toLowerCase() === ALLOWED);
  if (!allowed) {
    blocked += 1;
    const err = new Error(
      `artillery-guard: refused connection to ${host}: only loopback${ALLOWED ? ` and ${ALLOWED}` : ''} is allowed (WSRELAY_ARTILLERY_ALLOW_REMOTE=1 allows WSRELAY_URL's host)`,
    );
    err.code = 'ECONNREFUSED';
    process.nextTick(() => this.destroy(err));
    return this;
  }
  return originalConnect.apply(this, args);
};

if (process.env.WSRELAY_ARTILLERY_GUARD_REPORT) {
  const { isMainThread } = require('worker_threads');
  if (isMainThread) {
    process.on('exit', () => {
      process.stderr.write(
        `artillery-guard: telemetry events dropped=${dropped}, outbound connections blocked=${blocked}\n`,
      );
    });
  }
}
