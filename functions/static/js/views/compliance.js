// Compliance per org and per rule, the last sweep, and the trend over the sweeps before it (an SVG chart that
// is also given as a table, for screen readers and for anyone who wants the numbers).

import { api, query } from "../api.js";
import { facts, field, fill, h, heading, select, table, titled } from "../elements.js";
import { when } from "../time.js";

const STATUSES = ["compliant", "conflict", "exempt", "held", "failed"];
const NOT_COMPLIANT = ["conflict", "exempt", "held", "failed"];
const LENGTHS = ["5", "10", "20", "50"].map((n) => [n, `the last ${n} sweeps`]);
const SVG = "http://www.w3.org/2000/svg";

export async function complianceView(ctx) {
  const { main, params, signal } = ctx;
  const sweeps = params.get("sweeps") || "10";
  const doc = await api(`/api/reports/compliance${query({ sweeps })}`, { signal });
  const length = select("sweeps", LENGTHS, sweeps);
  length.addEventListener("change", () => ctx.navigate(`#/compliance${query({ sweeps: length.value })}`));
  const last = doc.last_sweep;
  fill(
    main,
    heading("Compliance"),
    lastSweep(last),
    tiles(doc.totals),
    titled(
      "co-orgs",
      "By org",
      table(
        "Mailboxes per org",
        columns("Org", (r) => r.org, true),
        doc.orgs,
        { empty: "No org is registered." },
      ),
    ),
    titled(
      "co-rules",
      "By rule",
      table(
        "Conflicts and cases per rule",
        columns("Rule", (r) => r.rule, false),
        doc.rules,
        {
          empty: "No rule has decided a conflict or a waiting case yet.",
        },
      ),
    ),
    titled("co-trend", "Trend", h("div", { class: "fields" }, field("Show", length)), trend(doc.trend)),
    titled("co-ex", "Exemptions", exemptions(doc.exemptions)),
  );
}

function lastSweep(last) {
  if (!last) {
    return h(
      "p",
      { class: "error-text" },
      "No sweep has run yet, so conflicts are unknown: start one under ",
      h("a", { href: "#/jobs" }, "Sweeps & migrations"),
      ". Held and failed cases are live.",
    );
  }
  const mode = last.apply ? "applied" : "a dry run";
  return h(
    "p",
    { class: "muted" },
    "Conflicts as the last sweep found them (",
    when(last.at, { withRelative: true }),
    `, ${mode}); held and failed cases as they are now.`,
  );
}

function n(value) {
  return value === null || value === undefined ? "–" : String(value);
}

function tiles(totals) {
  return h(
    "ul",
    { class: "tiles", "aria-label": "Totals" },
    ["mailboxes", ...STATUSES].map((s) => h("li", {}, h("span", { class: "count" }, n(totals[s])), ` ${s}`)),
  );
}

function columns(label, name, withMailboxes) {
  return [
    { label, cell: name },
    ...(withMailboxes ? [{ label: "Mailboxes", num: true, cell: (r) => n(r.mailboxes) }] : []),
    ...STATUSES.map((s) => ({ label: s[0].toUpperCase() + s.slice(1), num: true, cell: (r) => n(r[s]) })),
  ];
}

function exemptions(ex) {
  const soon = ex.expiring_soon || [];
  return [
    facts([
      ["Active", n(ex.active)],
      ["Expired", n(ex.expired)],
      ["Removed", n(ex.removed)],
    ]),
    soon.length
      ? h(
          "p",
          {},
          "Ending within two weeks: ",
          soon.map((e, i) => [i ? "; " : "", `${e.what} (${e.expires})`]),
          ". ",
          h("a", { href: "#/exemptions?state=active" }, "Active exemptions"),
        )
      : null,
  ];
}

/** Stacked bars per sweep (conflict, exempt, held, failed), oldest on the left; the compliant share as text. */
function trend(points) {
  if (!points.length) return h("p", { class: "muted" }, "No sweep recorded its compliance yet.");
  const width = 640;
  const height = 240;
  const pad = { left: 44, right: 12, top: 12, bottom: 36 };
  const top = Math.max(1, ...points.map((p) => NOT_COMPLIANT.reduce((sum, s) => sum + p[s], 0)));
  const step = (width - pad.left - pad.right) / points.length;
  const days = new Set(points.map((p) => new Date(p.at).toDateString()));
  const sameDay = days.size === 1;
  const bar = Math.max(4, Math.min(40, step * 0.6));
  const y = (v) => height - pad.bottom - (v / top) * (height - pad.top - pad.bottom);
  const svg = el("svg", {
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-labelledby": "trend-title trend-desc",
    class: "chart",
  });
  const last = points[points.length - 1];
  const share = last.mailboxes ? Math.round((1000 * last.compliant) / last.mailboxes) / 10 : null;
  svg.append(
    el(
      "title",
      { id: "trend-title" },
      `Conflicts, exemptions, held and failed cases over the last ${points.length} sweeps`,
    ),
    el("desc", { id: "trend-desc" }, describeTrend(points, share)),
  );
  for (const level of [0, Math.round(top / 2), top]) {
    svg.append(
      el("line", { x1: pad.left, x2: width - pad.right, y1: y(level), y2: y(level), class: "grid" }),
      el("text", { x: pad.left - 6, y: y(level) + 4, "text-anchor": "end", class: "axis" }, String(level)),
    );
  }
  points.forEach((p, i) => {
    const x = pad.left + step * i + (step - bar) / 2;
    let base = 0;
    for (const s of NOT_COMPLIANT) {
      if (!p[s]) continue;
      const rect = el("rect", {
        x,
        width: bar,
        y: y(base + p[s]),
        height: y(base) - y(base + p[s]),
        class: `bar-${s}`,
      });
      rect.append(el("title", {}, `${p[s]} ${s}`));
      svg.append(rect);
      base += p[s];
    }
    const label = tick(p.at, sameDay);
    svg.append(
      el("text", { x: x + bar / 2, y: height - pad.bottom + 16, "text-anchor": "middle", class: "axis" }, label),
    );
  });
  const legend = h(
    "ul",
    { class: "legend", "aria-hidden": "true" },
    NOT_COMPLIANT.map((s) => h("li", {}, h("span", { class: `swatch bar-${s}` }), ` ${s}`)),
  );
  const data = table(
    "The trend as a table",
    [
      { label: "Sweep", cell: (p) => h("a", { href: `#/sweeps/${encodeURIComponent(p.sweep)}` }, p.sweep.slice(0, 8)) },
      { label: "Finished", cell: (p) => when(p.at) },
      { label: "Mode", cell: (p) => (p.apply ? "apply" : "dry run") },
      { label: "Mailboxes", num: true, cell: (p) => n(p.mailboxes) },
      ...STATUSES.map((s) => ({ label: s[0].toUpperCase() + s.slice(1), num: true, cell: (p) => n(p[s]) })),
    ],
    points,
  );
  return [
    h("figure", { class: "trend" }, svg, legend, h("figcaption", {}, describeTrend(points, share))),
    h("details", {}, h("summary", {}, "The numbers behind the chart"), data),
  ];
}

/** A sweep's label on the axis: its day, or its time when every sweep shown ran the same day. */
function tick(at, sameDay) {
  const moment = new Date(at);
  return sameDay
    ? moment.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })
    : moment.toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

function describeTrend(points, share) {
  const first = points[0];
  const last = points[points.length - 1];
  const change =
    points.length > 1
      ? `Conflicts went from ${first.conflict} to ${last.conflict} over ${points.length} sweeps.`
      : `The one sweep found ${last.conflict} conflicts.`;
  return `${change} ${share === null ? "" : `${share}% of mailboxes were compliant at the last sweep.`}`.trim();
}

function el(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}
