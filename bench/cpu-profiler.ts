/**
 * Preloaded into `quotad serve` by the profile scenario of `make bench` (NODE_OPTIONS=--import=<this file>,
 * since Node refuses --cpu-prof in NODE_OPTIONS): the V8 sampling profiler through node:inspector, started
 * by the first SIGUSR2 and stopped by the second, which writes <QUOTAD_BENCH_PROFILE_DIR>/<pid>.cpuprofile.
 * So the profile covers the measured load and nothing of the start-up.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const dir = process.env.QUOTAD_BENCH_PROFILE_DIR ?? '.';
const session = new Session();
session.connect();
session.post('Profiler.enable');
session.post('Profiler.setSamplingInterval', { interval: 1000 });
let running = false;

process.on('SIGUSR2', () => {
  if (!running) {
    running = true;
    session.post('Profiler.start');
    return;
  }
  running = false;
  session.post('Profiler.stop', (error, result) => {
    const file = join(dir, `${process.pid}.cpuprofile`);
    writeFileSync(error ? `${file}.error` : file, error ? String(error) : JSON.stringify(result.profile));
  });
});
