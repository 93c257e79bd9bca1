// Shared session logic for the wsrelay k6 scenarios (k6/websockets, the
// stable module; k6/experimental/websockets is deprecated — k6/run.sh maps
// the import back only for a k6 too old to have the stable one).
// Each iteration opens one WebSocket through wsrelay, sends MESSAGES
// messages INTERVAL_MS apart, check()s that each echo is exactly what was
// sent, measures its round trip, then closes.
//
// Environment: WSRELAY_URL (default ws://127.0.0.1:8080/ws/echo),
// MESSAGES (20), INTERVAL_MS (500), SIZE (64 bytes of payload).
import { check } from 'k6';
import { WebSocket } from 'k6/websockets';
import { setTimeout } from 'k6/timers';
import { Trend, Rate, Counter } from 'k6/metrics';

export const URL = __ENV.WSRELAY_URL || 'ws://127.0.0.1:8080/ws/echo';
const MESSAGES = Number(__ENV.MESSAGES || 20);
const INTERVAL_MS = Number(__ENV.INTERVAL_MS || 500);
const SIZE = Number(__ENV.SIZE || 64);

export const connectTime = new Trend('ws_connect_time', true);
export const roundTrip = new Trend('ws_round_trip', true);
export const sessionErrors = new Rate('ws_session_errors');
export const messagesEchoed = new Counter('ws_messages_echoed');

// Thresholds every scenario shares; each can be tightened by environment.
export const thresholds = {
  ws_connect_time: [`p(95)<${__ENV.MAX_CONNECT_P95_MS || 1000}`],
  ws_round_trip: [`p(99)<${__ENV.MAX_RTT_P99_MS || 500}`],
  ws_session_errors: [`rate<${__ENV.MAX_ERROR_RATE || 0.01}`],
  // Every echo must be byte for byte what was sent.
  checks: [`rate>${1 - Number(__ENV.MAX_ERROR_RATE || 0.01)}`],
};

// Options for an open model: new sessions arrive at RATE per second (ramped
// from 0 over RAMP, held for DURATION) whether or not earlier ones are done —
// how real clients arrive, and what shows a relay that slows down (with
// ramping VUs a slow relay also slows the load).
export function arrivalOptions(name, defaults) {
  const rate = Number(__ENV.RATE || defaults.rate);
  // A session lasts about MESSAGES × INTERVAL_MS: that many VUs per arrival
  // per second are busy at once.
  const busy = Math.ceil((rate * MESSAGES * INTERVAL_MS) / 1000) + 10;
  return {
    scenarios: {
      [name]: {
        executor: 'ramping-arrival-rate',
        startRate: 0,
        timeUnit: '1s',
        preAllocatedVUs: Number(__ENV.PRE_VUS || busy),
        maxVUs: Number(__ENV.MAX_VUS || busy * 2),
        stages: [
          { duration: __ENV.RAMP || defaults.ramp, target: rate },
          { duration: __ENV.DURATION || defaults.duration, target: rate },
        ],
      },
    },
    thresholds: {
      ...thresholds,
      // Arrivals k6 could not start for want of a VU mean the load was not offered.
      dropped_iterations: [`count<=${__ENV.MAX_DROPPED || 0}`],
    },
  };
}

// Options for a scenario that ramps to USERS sessions over RAMP, holds them
// for DURATION and ramps down; `defaults` gives each variable's default.
export function rampOptions(name, defaults) {
  const users = Number(__ENV.USERS || defaults.users);
  return {
    scenarios: {
      [name]: {
        executor: 'ramping-vus',
        startVUs: 0,
        stages: [
          { duration: __ENV.RAMP || defaults.ramp, target: users },
          { duration: __ENV.DURATION || defaults.duration, target: users },
          { duration: __ENV.RAMP_DOWN || '30s', target: 0 },
        ],
        gracefulRampDown: '30s',
      },
    },
    thresholds,
  };
}

const pad = 'x'.repeat(Math.max(0, SIZE - 32));

export function session() {
  const started = Date.now();
  const ws = new WebSocket(URL);
  let sent = 0;
  let echoed = 0;
  let failed = false;
  const texts = [];

  const sendNext = () => {
    if (sent >= MESSAGES || ws.readyState !== 1) return;
    const text = JSON.stringify({ t: Date.now(), i: sent, vu: __VU, p: pad });
    texts.push(text);
    ws.send(text);
    sent += 1;
  };

  ws.onopen = () => {
    connectTime.add(Date.now() - started);
    sendNext();
  };
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    const same = check(e.data, {
      'echo is what was sent': (d) => d === texts[echoed],
    });
    if (!same) failed = true;
    roundTrip.add(Date.now() - m.t);
    messagesEchoed.add(1);
    echoed += 1;
    if (echoed >= MESSAGES) {
      ws.close();
    } else {
      setTimeout(sendNext, INTERVAL_MS);
    }
  };
  ws.onerror = () => {
    failed = true;
  };
  ws.onclose = () => {
    sessionErrors.add(failed || echoed < MESSAGES);
  };
}
