// A mailbox's story: who owned it when, what each org holds now (read live), and every claim, decision and action.

import { api } from "../api.js";
import { badge, field, fill, h, heading, table } from "../elements.js";
import { announce, describe } from "../status.js";
import { when } from "../time.js";

// Dataverse's choices for the mailbox columns shown (the mailbox table's option sets).
const ACT_METHOD = { 0: "Dynamics 365 for Outlook", 1: "Server-side synchronization", 2: "None" };
const STATUS = { 0: "Not run", 1: "Success", 2: "Failure" };

function searchForm(navigate, value = "") {
  const input = h("input", { name: "address", type: "search", value, autocomplete: "off", required: true });
  return h(
    "form",
    {
      class: "panel",
      novalidate: true,
      role: "search",
      "aria-label": "Find a mailbox",
      onsubmit: (event) => {
        event.preventDefault();
        const address = input.value.trim();
        if (!address.includes("@")) {
          announce(
            "Enter a full address, like aiko.tanaka@contoso.com. To search by part of one, use the case list.",
            "error",
          );
          input.setAttribute("aria-invalid", "true");
          input.focus();
          return;
        }
        navigate(`#/mailboxes/${encodeURIComponent(address)}`);
      },
    },
    h(
      "div",
      { class: "fields" },
      field("Mailbox address", input, { wide: true }),
      h("div", { class: "field" }, h("button", { type: "submit", class: "primary" }, "Show")),
    ),
  );
}

export async function mailboxSearchView({ main, navigate }) {
  fill(
    main,
    heading("Mailboxes"),
    searchForm(navigate),
    h(
      "p",
      { class: "muted" },
      "Each case links to its mailbox too. ",
      h("a", { href: "#/cases?state=open" }, "Open cases"),
    ),
  );
}

export async function mailboxView({ main, args, signal, navigate }) {
  const address = args[0];
  const path = `/api/mailboxes/${encodeURIComponent(address)}`;
  const rowsSection = h(
    "section",
    { "aria-labelledby": "orgs-title", "aria-busy": "true" },
    h("h2", { id: "orgs-title" }, "In each org now"),
    h("p", { class: "muted" }, "Reading each org's mailbox row…"),
  );
  const story = await api(`${path}/timeline`, { signal });
  fill(
    main,
    heading(story.mailbox),
    searchForm(navigate, story.mailbox),
    h(
      "section",
      { "aria-labelledby": "owner-title" },
      h("h2", { id: "owner-title" }, "Owner over time"),
      owners(story),
    ),
    rowsSection,
    h(
      "section",
      { "aria-labelledby": "events-title" },
      h("h2", { id: "events-title" }, "Timeline, newest first"),
      story.truncated ? h("p", { class: "muted" }, "Only the latest 50 claims and 50 cases are shown.") : null,
      events(story.events),
    ),
  );
  // The org rows come live from Dataverse: slower, so they fill in when they arrive.
  fillOrgRows(rowsSection, `${path}/orgs`, story.owner, signal);
}

async function fillOrgRows(section, path, owner, signal) {
  const title = section.firstChild;
  try {
    const live = await api(path, { signal });
    fill(section, title, orgRows(live.orgs, owner));
  } catch (err) {
    if (err.name === "AbortError") return;
    fill(section, title, h("p", { class: "error-text" }, describe(err)));
  }
  section.setAttribute("aria-busy", "false");
}

function owners(story) {
  if (!story.owners.length) return h("p", {}, "No org owns this mailbox in OrgGuard's ledger.");
  return table(
    "Owners, oldest first",
    [
      { label: "Owner", cell: (s) => (s.until ? s.owner : h("strong", {}, `${s.owner} (now)`)) },
      { label: "From", cell: (s) => (s.since ? when(s.since) : "before the oldest record") },
      { label: "Until", cell: (s) => (s.until ? when(s.until) : "now") },
      { label: "How", cell: (s) => how(s.how, s.case) },
    ],
    story.owners,
  );
}

function how(text, caseId) {
  const label = text === "first-claim" ? "first to claim it" : text || "–";
  return caseId
    ? [label, " (", h("a", { href: `#/cases/${encodeURIComponent(caseId)}` }, `case ${caseId.slice(0, 8)}`), ")"]
    : label;
}

function yesNo(value) {
  return value === true ? "yes" : value === false ? "no" : "–";
}

function orgRows(rows, owner) {
  return table(
    `Rows read now; the ledger's owner is ${owner || "nobody"}`,
    [
      { label: "Org", cell: (r) => (r.org === owner ? h("strong", {}, `${r.org} (owner)`) : r.org) },
      {
        label: "Row",
        cell: (r) =>
          r.error
            ? h("span", { class: "error-text" }, `Could not read: ${r.error}`)
            : r.found
              ? "found"
              : "no active row",
      },
      {
        label: "ACT method",
        cell: (r) => (r.found ? (ACT_METHOD[r.actdeliverymethod] ?? String(r.actdeliverymethod)) : "–"),
      },
      { label: "Sync from this org only", cell: (r) => (r.found ? yesNo(r.orgmarkedasprimaryforexchangesync) : "–") },
      { label: "ACT status", cell: (r) => (r.found ? (STATUS[r.actstatus] ?? "–") : "–") },
      { label: "Modified", cell: (r) => (r.found && r.modifiedon ? when(r.modifiedon) : "–") },
    ],
    rows,
    { empty: "No org is registered." },
  );
}

function caseLink(id) {
  return id ? h("a", { href: `#/cases/${encodeURIComponent(id)}` }, `case ${id.slice(0, 8)}`) : null;
}

function describeEvent(e) {
  switch (e.type) {
    case "claim":
      return [
        `${e.org} claimed it (${e.kind.replace("_", " ")} via ${e.origin}): ${e.effect}`,
        e.case ? [" — ", caseLink(e.case)] : null,
      ];
    case "case":
      return [caseLink(e.case), ` ${e.state} by ${e.actor}: ${e.note}`];
    case "action":
      return [
        caseLink(e.case),
        ` ${e.kind} in ${e.org}: `,
        badge("status", e.status),
        e.attempts ? ` after ${e.attempts} attempt${e.attempts === 1 ? "" : "s"}` : "",
        e.last_error ? ` — ${e.last_error}` : "",
      ];
    case "owner":
      return [
        h("span", { class: "what" }, `${e.owner} became the owner`),
        e.previous ? ` (was ${e.previous})` : "",
        e.actor ? `, by ${e.actor}` : "",
        e.case ? [" — ", caseLink(e.case)] : "",
      ];
    default:
      return JSON.stringify(e);
  }
}

function events(list) {
  if (!list.length) return h("p", { class: "muted" }, "OrgGuard has recorded nothing for this mailbox.");
  return h(
    "ol",
    { class: "timeline", reversed: true },
    [...list].reverse().map((e) => h("li", { class: e.type }, when(e.at), " ", describeEvent(e))),
  );
}
