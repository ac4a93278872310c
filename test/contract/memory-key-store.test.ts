import { MemoryKeyStore } from '../../src/store/memory-key-store.js';
import { describeKeyStoreContract } from './key-store-contract.js';

describeKeyStoreContract('MemoryKeyStore', async (clock) => new MemoryKeyStore({ clock }));
