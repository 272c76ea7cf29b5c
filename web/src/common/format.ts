// Small formatting helpers shared by the console and the widget.

/** Accepts ms since epoch (the protocol) and, defensively, seconds. */
export function toDate(ts: number): Date {
  return new Date(ts < 1e12 ? ts * 1000 : ts);
}

export function timeOfDay(ts: number): string {
  return toDate(ts).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

/** Chat-list timestamp: time today, weekday this week, else the date. */
export function listTime(ts: number, now = Date.now()): string {
  if (!ts) return '';
  const d = toDate(ts);
  const n = new Date(now);
  if (d.toDateString() === n.toDateString()) return timeOfDay(ts);
  const days = (n.getTime() - d.getTime()) / 86_400_000;
  if (days < 6) return d.toLocaleDateString(undefined, { weekday: 'short' });
  if (d.getFullYear() === n.getFullYear()) return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  return d.toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
}

export function fullTime(ts: number): string {
  return toDate(ts).toLocaleString();
}

export function badge(n: number): string {
  return n > 99 ? '99+' : String(n);
}

export function money(v: number | string | undefined): string {
  if (v === undefined || v === null || v === '') return '';
  const n = typeof v === 'number' ? v : Number(v);
  if (Number.isNaN(n)) return String(v);
  return n.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

/** A calendar date ("Jan 14", with the year when it is another year); for future dates too. */
export function shortDate(ts: number, now = Date.now()): string {
  const d = toDate(ts);
  const opts: Intl.DateTimeFormatOptions = { month: 'short', day: 'numeric' };
  if (d.getFullYear() !== new Date(now).getFullYear()) opts.year = 'numeric';
  return d.toLocaleDateString(undefined, opts);
}
