// Exemptions: what is left out of enforcement, why, until when; an Admin adds and removes them.

import { api, query } from "../api.js";
import { badge, field, fill, h, heading, select, table } from "../elements.js";
import { can, current } from "../session.js";
import { announce, describe } from "../status.js";
import { when } from "../time.js";

const SCOPES = [
  ["mailbox", "A mailbox"],
  ["domain", "A domain"],
  ["user", "A user (userPrincipalName or object id)"],
  ["orgs", "Claims between two orgs"],
];
const STATES = [
  ["", "Every state"],
  ["active", "Active"],
  ["expired", "Expired"],
  ["removed", "Removed"],
];

export async function exemptionsView(ctx) {
  const { main, params, signal } = ctx;
  const state = params.get("state") || "";
  const doc = await api(`/api/exemptions${query({ state })}`, { signal });
  const filter = select("state", STATES, state);
  filter.addEventListener("change", () => ctx.navigate(`#/exemptions${query({ state: filter.value })}`));
  fill(
    main,
    heading("Exemptions"),
    h(
      "p",
      { class: "muted" },
      "An exempt claim is only recorded: nothing is written to the orgs and nobody is stopped; its decision names ",
      "the exemption. An exemption ends by itself after its last day (UTC). ",
      `The set is at version ${doc.version}; every change is in the audit log.`,
    ),
    can("admin")
      ? h("section", { "aria-labelledby": "ex-add" }, h("h2", { id: "ex-add" }, "Add one"), addForm(ctx))
      : null,
    h(
      "section",
      { "aria-labelledby": "ex-list" },
      h("h2", { id: "ex-list" }, "The list"),
      h("div", { class: "fields" }, field("Show", filter)),
      table(
        "Exemptions, oldest first",
        [
          { label: "Exempts", cell: (e) => e.what },
          { label: "State", cell: (e) => badge("exemption", e.state) },
          { label: "Until", cell: (e) => e.expires },
          { label: "Ticket", cell: (e) => e.ticket },
          { label: "Why", cell: (e) => e.reason },
          { label: "By", cell: (e) => [e.created_by, " ", when(e.created_at)] },
          { label: "", cell: (e) => (can("admin") && e.state === "active" ? removeButton(ctx, e) : ended(e)) },
        ],
        doc.items,
        { empty: state ? `No ${state} exemption.` : "Nothing is exempt." },
      ),
    ),
  );
}

function ended(e) {
  if (e.state === "removed") return `removed by ${e.removed_by}${e.removed_reason ? `: ${e.removed_reason}` : ""}`;
  if (e.state === "expired") return e.expired_at ? "ended by its date (reported)" : "ended by its date";
  return "";
}

function addForm(ctx) {
  const scope = select("scope", SCOPES, "mailbox");
  const value = h("input", { name: "value", autocomplete: "off", required: true });
  const orgs = (current()?.orgs || []).map((o) => [o, o]);
  const first = select("org-a", orgs, orgs[0]?.[0]);
  const second = select("org-b", orgs, orgs[1]?.[0]);
  const pair = h("div", { class: "fields", hidden: true }, field("First org", first), field("Second org", second));
  const single = field("Mailbox address", value, { wide: true });
  const reason = h("textarea", { name: "reason", rows: "2", required: true });
  const ticket = h("input", { name: "ticket", required: true, autocomplete: "off" });
  const expires = h("input", { name: "expires", type: "date", required: true });
  const error = h("p", { class: "error-text", id: "ex-error", "aria-live": "polite" });
  const labels = { mailbox: "Mailbox address", domain: "Domain", user: "User (userPrincipalName or id)" };
  scope.addEventListener("change", () => {
    const orgsChosen = scope.value === "orgs";
    pair.hidden = !orgsChosen;
    single.hidden = orgsChosen;
    if (!orgsChosen) single.querySelector("label").textContent = labels[scope.value];
  });
  const form = h(
    "form",
    {
      class: "panel",
      novalidate: true,
      "aria-label": "Add an exemption",
      onsubmit: async (event) => {
        event.preventDefault();
        const missing = [
          [scope.value !== "orgs" && !value.value.trim(), value, "Say what to exempt."],
          [!reason.value.trim(), reason, "A reason is required."],
          [!ticket.value.trim(), ticket, "A ticket reference is required."],
          [!expires.value, expires, "Give the last day it applies."],
        ].find(([bad]) => bad);
        for (const el of [value, reason, ticket, expires]) el.removeAttribute("aria-invalid");
        if (missing) {
          const [, el, message] = missing;
          el.setAttribute("aria-invalid", "true");
          error.textContent = message;
          el.focus();
          return;
        }
        const subject = scope.value === "orgs" ? [first.value, second.value] : value.value.trim();
        const body = {
          [scope.value]: subject,
          reason: reason.value.trim(),
          ticket: ticket.value.trim(),
          expires: expires.value,
        };
        try {
          const added = await api("/api/exemptions", { method: "POST", body });
          error.textContent = "";
          announce(`Exempt until ${added.expires}: ${added.what}.`, "ok");
          ctx.refresh();
        } catch (err) {
          error.textContent = describe(err);
          announce(describe(err), "error");
        }
      },
    },
    h("div", { class: "fields" }, field("Exempt", scope), single),
    pair,
    h(
      "div",
      { class: "fields" },
      field("Reason", reason, { wide: true }),
      field("Ticket", ticket, { hint: "the change or incident it belongs to" }),
      field("Last day (UTC)", expires, { hint: "at most a year ahead" }),
    ),
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, "Add exemption")),
    error,
  );
  return form;
}

function removeButton(ctx, e) {
  return h(
    "button",
    {
      type: "button",
      class: "danger",
      "aria-label": `Remove the exemption of ${e.what}`,
      onclick: async (event) => {
        const button = event.currentTarget;
        const why = window.prompt(`Remove the exemption of ${e.what}? Why does it end early?`, "");
        if (why === null) return;
        button.disabled = true;
        try {
          await api(`/api/exemptions/${encodeURIComponent(e.id)}${query({ reason: why.trim() })}`, {
            method: "DELETE",
          });
          announce(`Removed: ${e.what} is enforced again.`, "ok");
        } catch (err) {
          announce(describe(err), "error"); // removed by someone else meanwhile: the list shows it
        }
        ctx.refresh();
      },
    },
    "Remove",
  );
}
