// Times as the viewer reads them: their own time zone, named.

const FORMAT = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  timeZoneName: "short",
});
const RELATIVE = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const UNITS = [
  ["day", 86400],
  ["hour", 3600],
  ["minute", 60],
];

export function localTime(iso) {
  return iso ? FORMAT.format(new Date(iso)) : "";
}

/** "in 2 days", "3 hours ago" */
export function relative(iso, now = Date.now()) {
  const seconds = (new Date(iso).getTime() - now) / 1000;
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size) return RELATIVE.format(Math.round(seconds / size), unit);
  }
  return RELATIVE.format(Math.round(seconds), "second");
}

/** A <time> element in local time (the UTC instant in its title). */
export function when(iso, { withRelative = false } = {}) {
  if (!iso) return "–";
  const el = document.createElement("time");
  el.dateTime = iso;
  el.title = new Date(iso).toISOString();
  el.textContent = localTime(iso) + (withRelative ? ` (${relative(iso)})` : "");
  return el;
}
