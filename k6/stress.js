// Stress: USERS (default 2,000) concurrent sessions for DURATION (default 10m),
// reached over RAMP (1m).   k6 run -e WSRELAY_URL=ws://host:8080/ws/echo k6/stress.js
import { session, rampOptions } from './lib.js';

export const options = rampOptions('stress', { users: 2000, ramp: '1m', duration: '10m' });

export default session;
