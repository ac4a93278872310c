import { rlsSuite } from './envoy-rls-suite.js';

rlsSuite({ name: 'memory', env: () => ({}) });
