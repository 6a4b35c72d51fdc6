// Held, failed and open cases at a glance, by org, and the held case waiting longest.

import { api } from "../api.js";
import { fill, h, heading, table, titled } from "../elements.js";
import { when } from "../time.js";
import { deadLetterSummary } from "./deadletters.js";

const FIRST = ["held", "failed", "open"];

function casesLink(filter, text) {
  const q = new URLSearchParams(filter).toString();
  return h("a", { href: `#/cases?${q}` }, text);
}

export async function overviewView({ main, signal }) {
  let doc;
  try {
    doc = await api("/api/overview", { signal });
  } catch (err) {
    if (err.status !== 404) throw err;
    // An older OrgGuard without the overview: the rest of the page still works.
    fill(
      main,
      heading("Overview"),
      h("p", {}, "This OrgGuard has no overview yet. ", h("a", { href: "#/cases?state=held" }, "Held cases")),
    );
    return;
  }
  const counts = doc.counts || {};
  const states = [...FIRST, ...Object.keys(counts).filter((s) => !FIRST.includes(s))];
  const tiles = h(
    "ul",
    { class: "tiles", "aria-label": "Cases by state" },
    states.map((state) =>
      h("li", {}, casesLink({ state }, [h("span", { class: "count" }, String(counts[state] ?? 0)), ` ${state}`])),
    ),
  );
  const oldest = doc.oldest_held;
  const waiting = oldest
    ? h(
        "div",
        { class: "panel" },
        h(
          "p",
          {},
          h("a", { href: `#/cases/${encodeURIComponent(oldest.case)}` }, "The oldest held case"),
          " is on ",
          h("a", { href: `#/mailboxes/${encodeURIComponent(oldest.mailbox)}` }, oldest.mailbox),
          ".",
        ),
        h(
          "p",
          {},
          "Held since ",
          when(oldest.created_at, { withRelative: true }),
          "; it expires ",
          when(oldest.expires_at, { withRelative: true }),
          ".",
        ),
      )
    : h("p", { class: "muted" }, "No case is waiting for an approver.");
  const byOrg = Object.entries(doc.by_org || {}).sort(([a], [b]) => a.localeCompare(b));
  const orgs = table(
    "Cases by org (as owner or claimant)",
    [
      { label: "Org", cell: ([org]) => casesLink({ state: "open", org }, org) },
      ...FIRST.map((state) => ({
        label: state[0].toUpperCase() + state.slice(1),
        num: true,
        cell: ([org, c]) => casesLink({ state, org }, String(c[state] ?? 0)),
      })),
    ],
    byOrg,
    { empty: "No org has open cases." },
  );
  const letters = await deadLetterSummary(signal);
  fill(
    main,
    heading("Overview"),
    titled("ov-states", "Cases", tiles),
    titled("ov-oldest", "Waiting longest", waiting),
    titled("ov-orgs", "By org", orgs),
    letters,
  );
}
