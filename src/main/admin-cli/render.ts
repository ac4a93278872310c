/** How the admin CLI shows keys and usage to a human: aligned tables and labelled fields. */
import { formatDuration } from '../../core/duration.js';
import { formatUsd } from '../../core/money.js';
import type { ApiKey__Output } from '../../gen/quotad/v1/ApiKey.js';
import type { Event__Output } from '../../gen/quotad/v1/Event.js';
import type { AuditKeyState__Output } from '../../gen/quotad/v1/AuditKeyState.js';
import type { AuditRecord__Output } from '../../gen/quotad/v1/AuditRecord.js';
import type { GetKeyUsageResponse__Output } from '../../gen/quotad/v1/GetKeyUsageResponse.js';
import type { LimitStatus__Output } from '../../gen/quotad/v1/LimitStatus.js';

/** ISO 8601 in UTC to the second, or '-' for the protocol's 0 ("never" / "not set"). */
export function isoTime(ms: number, none = '-'): string {
  return ms > 0 ? new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z') : none;
}

/** Columns padded to their widest cell, two spaces apart, so the table lines up in a terminal. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (row: string[]) =>
    row
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join('  ')
      .trimEnd();
  return [header, ...rows].map(line).join('\n') + '\n';
}

/** `label: value` lines; a list value continues on indented lines under its first item. */
export function fields(entries: [string, string | string[]][]): string {
  const width = Math.max(...entries.map(([label]) => label.length)) + 2;
  return entries
    .map(([label, value]) => {
      const [first = '-', ...rest] = typeof value === 'string' ? [value] : value;
      return [`${label}:`.padEnd(width) + first, ...rest.map((item) => ' '.repeat(width) + item)].join('\n');
    })
    .join('\n')
    .concat('\n');
}

export function keyFields(key: ApiKey__Output): string {
  return fields([
    ['id', key.id],
    ['name', key.name],
    ['owner', key.owner],
    ['org', key.org],
    ['tier', key.tier],
    ['state', key.state],
    ['created', isoTime(key.createdAtMs)],
    ['expires', isoTime(key.expiresAtMs, 'never')],
    ['revoked', isoTime(key.revokedAtMs)],
    ['last used', isoTime(key.lastUsedAtMs, 'never')],
    ['limits', key.limits.length ? key.limits.map((l) => `${l.name} = ${l.value}`) : "the tier's"],
    ['signing', key.signing || 'off'],
    [
      'secrets',
      key.secrets.map(
        (s) =>
          `${s.hint}  created ${isoTime(s.createdAtMs)}, ${s.expiresAtMs ? `expires ${isoTime(s.expiresAtMs)}` : 'lives with the key'}`,
      ),
    ],
  ]);
}

/** The secret alone on its line, so it can be copied whole, with the warning that this is the only chance. */
export function secretBlock(secret: string): string {
  return `Secret (shown once, store it now: the authority keeps only its hash and cannot show it again):\n\n${secret}\n\n`;
}

/** The signing secret likewise, when there is one. */
export function signingBlock(signingSecret: string): string {
  if (!signingSecret) return '';
  return `Signing secret (shown once, store it with the key: it signs every request, see the README):\n\n${signingSecret}\n\n`;
}

export function keyTable(keys: ApiKey__Output[]): string {
  if (keys.length === 0) return 'No keys.\n';
  return table(
    ['ID', 'NAME', 'OWNER', 'ORG', 'TIER', 'STATE', 'CREATED', 'EXPIRES', 'LAST USED'],
    keys.map((k) => [
      k.id,
      k.name,
      k.owner,
      k.org,
      k.tier,
      k.state,
      isoTime(k.createdAtMs),
      isoTime(k.expiresAtMs),
      isoTime(k.lastUsedAtMs),
    ]),
  );
}

export function amount(status: LimitStatus__Output, value: number): string {
  return status.unit === 'USD_MICROS' ? formatUsd(value) : String(value);
}

export function usageTable(response: GetKeyUsageResponse__Output): string {
  const { key, usage } = response;
  const title = key ? `Key ${key.id} (org ${key.org}, tier ${key.tier})\n\n` : '';
  const rows = (usage?.limits ?? []).map((status) => [
    status.shadow ? `${status.name} (shadow)` : status.name,
    status.kind.toLowerCase(),
    amount(status, status.used),
    amount(status, status.remaining),
    amount(status, status.limit),
    status.resetAfterMs > 0 ? formatDuration(status.resetAfterMs) : '-',
  ]);
  const totals = usage
    ? `\nTokens used: ${usage.tokensUsed}; spent: ${formatUsd(usage.usdMicrosSpent)}\n`
    : '';
  return title + table(['NAME', 'KIND', 'USED', 'REMAINING', 'LIMIT', 'RESETS IN'], rows) + totals;
}

/** Recent events, newest first: one line each with its delivery. */
export function eventTable(events: Event__Output[]): string {
  if (events.length === 0) return 'No events.\n';
  const rows = events.map((event) => [
    isoTime(Number(event.createdAtMs)),
    event.type,
    event.org,
    event.subject,
    event.keyId || '-',
    event.limit,
    String(event.threshold),
    event.type === 'budget.threshold' ? `${event.used}/${event.limitAmount}` : String(event.used),
    event.delivery,
    String(event.attempts),
  ]);
  const header = [
    'CREATED',
    'TYPE',
    'ORG',
    'SUBJECT',
    'KEY',
    'LIMIT',
    'THRESHOLD',
    'USED',
    'DELIVERY',
    'ATTEMPTS',
  ];
  return table(header, rows);
}

/** `tier, limits` of a key in an audit record, in one cell; '-' when there is none. */
function auditState(state: AuditKeyState__Output | null): string {
  if (!state) return '-';
  const limits = state.limits.map((l) => `${l.name}=${l.value}`).join(' ');
  return `${state.state.toLowerCase()} ${state.tier}${limits ? ` ${limits}` : ''} secrets=${state.secrets}`;
}

export function auditTable(records: AuditRecord__Output[]): string {
  if (records.length === 0) return 'No audit records.\n';
  return table(
    ['TIME', 'ACTOR', 'ACTION', 'KEY', 'OUTCOME', 'PEER', 'BEFORE', 'AFTER'],
    records.map((r) => [
      isoTime(r.timeMs),
      r.actor || '-',
      r.action,
      r.keyId || '-',
      r.outcome,
      r.peer,
      auditState(r.before),
      auditState(r.after),
    ]),
  );
}
