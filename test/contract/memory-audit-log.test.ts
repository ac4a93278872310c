import { MemoryAuditLog } from '../../src/store/audit-log.js';
import { describeAuditLogContract } from './audit-log-contract.js';

describeAuditLogContract(
  'MemoryAuditLog',
  async (clock, retention) => new MemoryAuditLog({ ...retention, now: () => clock.now() }),
);
