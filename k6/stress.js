// Stress: USERS (default 2,000) concurrent sessions for DURATION (default 10m).
//   k6 run -e WSRELAY_URL=ws://host:8080/ws/echo k6/stress.js
import { session, thresholds } from './lib.js';

const USERS = Number(__ENV.USERS || 2000);
export const options = {
  scenarios: {
    stress: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { duration: __ENV.RAMP || '1m', target: USERS },
        { duration: __ENV.DURATION || '10m', target: USERS },
        { duration: __ENV.RAMP_DOWN || '30s', target: 0 },
      ],
      gracefulRampDown: '30s',
    },
  },
  thresholds,
};

export default session;
