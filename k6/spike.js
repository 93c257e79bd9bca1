// Spike: from BASE (default 100) to USERS (default 5,000) sessions within
// SPIKE (default 10s), hold HOLD, drop back.
//   k6 run -e WSRELAY_URL=ws://host:8080/ws/echo k6/spike.js
import { session, thresholds } from './lib.js';

const BASE = Number(__ENV.BASE || 100);
const USERS = Number(__ENV.USERS || 5000);
export const options = {
  scenarios: {
    spike: {
      executor: 'ramping-vus',
      startVUs: BASE,
      stages: [
        { duration: __ENV.WARM || '30s', target: BASE },
        { duration: __ENV.SPIKE || '10s', target: USERS },
        { duration: __ENV.HOLD || '1m', target: USERS },
        { duration: __ENV.SPIKE || '10s', target: BASE },
        { duration: __ENV.COOL || '30s', target: BASE },
      ],
      gracefulRampDown: '30s',
    },
  },
  thresholds,
};

export default session;
