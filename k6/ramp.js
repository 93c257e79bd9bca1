// Ramp to USERS (default 1,000) concurrent sessions over RAMP (2m), hold for
// DURATION (3m), ramp down.   k6 run -e WSRELAY_URL=ws://host:8080/ws/echo k6/ramp.js
import { session, rampOptions } from './lib.js';

export const options = rampOptions('ramp', { users: 1000, ramp: '2m', duration: '3m' });

export default session;
