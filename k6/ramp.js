// Ramp to USERS (default 1,000) concurrent sessions over RAMP, hold for
// DURATION, ramp down.   k6 run -e WSRELAY_URL=ws://host:8080/ws/echo k6/ramp.js
import { session, thresholds } from './lib.js';

const USERS = Number(__ENV.USERS || 1000);
export const options = {
  scenarios: {
    ramp: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { duration: __ENV.RAMP || '2m', target: USERS },
        { duration: __ENV.DURATION || '3m', target: USERS },
        { duration: __ENV.RAMP_DOWN || '30s', target: 0 },
      ],
      gracefulRampDown: '30s',
    },
  },
  thresholds,
};

export default session;
