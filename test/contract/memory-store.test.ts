import { MemoryStore } from '../../src/store/memory-store.js';
import { describeQuotaContract } from './quota-contract.js';

describeQuotaContract('MemoryStore', async (clock) => new MemoryStore({ clock, sweepIntervalMs: 0 }));
