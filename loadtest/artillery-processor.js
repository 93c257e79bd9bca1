// Session logic for loadtest/artillery.yml, the same as k6/lib.js: connect,
// send MESSAGES timestamped messages INTERVAL_MS apart, time each echo, close.
// Custom metrics: ws.connect_time, ws.round_trip (histograms, ms),
// ws.messages_echoed, ws.session_errors (counters).
'use strict';

const MESSAGES = Number(process.env.MESSAGES || 20);
const INTERVAL_MS = Number(process.env.INTERVAL_MS || 500);
const SIZE = Number(process.env.SIZE || 64);
const TIMEOUT_MS = Number(process.env.ECHO_TIMEOUT_MS || 5000);
const pad = 'x'.repeat(Math.max(0, SIZE - 32));

// `connect.function`: runs just before the engine opens the WebSocket.
function markConnectStart(wsArgs, context, done) {
  context.vars.connectStart = performance.now();
  done();
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function echoSession(context, ee) {
  const ws = context.ws;
  ee.emit('histogram', 'ws.connect_time', performance.now() - context.vars.connectStart);
  let pending = null;
  ws.on('message', (data) => {
    if (!pending) return;
    const m = JSON.parse(data.toString());
    if (m.i !== pending.i) return;
    clearTimeout(pending.timer);
    ee.emit('histogram', 'ws.round_trip', performance.now() - m.t);
    ee.emit('counter', 'ws.messages_echoed', 1);
    const { resolve } = pending;
    pending = null;
    resolve();
  });
  try {
    for (let i = 0; i < MESSAGES; i += 1) {
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no echo within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
        pending = { i, resolve, timer };
        ws.send(JSON.stringify({ t: performance.now(), i, p: pad }), (err) => {
          if (err) {
            clearTimeout(timer);
            reject(err);
          }
        });
      });
      if (i + 1 < MESSAGES) await sleep(INTERVAL_MS);
    }
  } catch (err) {
    ee.emit('counter', 'ws.session_errors', 1);
    throw err;
  }
}

module.exports = { markConnectStart, echoSession };
