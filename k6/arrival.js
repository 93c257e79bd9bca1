// Open model: new sessions arrive at RATE per second (default 50), reached
// over RAMP (30s) and held for DURATION (3m), each MESSAGES echoes long.
//   k6 run -e WSRELAY_URL=ws://host:8080/ws/echo -e RATE=200 k6/arrival.js
import { session, arrivalOptions } from './lib.js';

export const options = arrivalOptions('arrival', { rate: 50, ramp: '30s', duration: '3m' });

export default session;
