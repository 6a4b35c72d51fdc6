// The case list: filters in the address (#/cases?state=held&org=...), server paging with a total, bulk decisions.

import { api, query } from "../api.js";
import { badge, field, fill, h, heading, select, table } from "../elements.js";
import { can, current } from "../session.js";
import { announce, describe } from "../status.js";
import { when } from "../time.js";

export const STATES = ["open", "held", "decided", "applied", "failed", "denied", "expired"];
const PAGE = 50;

// Cursors of the pages before this one, for "Previous" (the API pages forward only).
let trail = { key: "", cursors: [] };
// Say how many cases are shown when the viewer filtered or paged (not on every visit or refresh).
let sayCount = false;

function go(navigate, hash) {
  sayCount = true;
  navigate(hash);
}

function filterOf(params) {
  return { state: params.get("state") || "", org: params.get("org") || "", mailbox: params.get("mailbox") || "" };
}

function hashFor(filter, cursor) {
  return `#/cases${query({ ...filter, cursor })}`;
}

function describeFilter(filter) {
  const parts = [];
  if (filter.state) parts.push(`state ${filter.state}`);
  if (filter.org) parts.push(`org ${filter.org}`);
  if (filter.mailbox) parts.push(`mailbox containing “${filter.mailbox}”`);
  return parts.length ? parts.join(", ") : "all cases";
}

export async function casesView(ctx) {
  const { main, params, signal, navigate } = ctx;
  const filter = filterOf(params);
  const cursor = params.get("cursor") || "";
  const key = JSON.stringify(filter);
  if (trail.key !== key || !cursor) trail = { key, cursors: [] };
  const page = await api(`/api/cases${query({ ...filter, limit: PAGE, cursor })}`, { signal });
  const first = trail.cursors.length * PAGE + 1;
  const last = first + page.items.length - 1;
  const total = typeof page.total === "number" ? page.total : null;

  const rows = table(
    `Cases: ${describeFilter(filter)}`,
    [
      { label: "Created", cell: (c) => h("a", { href: `#/cases/${encodeURIComponent(c.id)}` }, when(c.created_at)) },
      { label: "Mailbox", cell: (c) => h("a", { href: `#/mailboxes/${encodeURIComponent(c.mailbox)}` }, c.mailbox) },
      { label: "Owner", cell: (c) => c.owner || "–" },
      { label: "Claimant", cell: (c) => c.claimant },
      {
        label: "Decision",
        cell: (c) => `${c.decision.effect} (${c.decision.rule})${c.decision.dry_run ? ", dry run" : ""}`,
      },
      { label: "State", cell: (c) => badge("state", c.state) },
      { label: "Expires", cell: (c) => (c.state === "held" ? when(c.expires_at) : "–") },
    ],
    page.items,
    { empty: "No case matches these filters." },
  );

  const shown = page.items.length ? `Cases ${first}–${last}${total === null ? "" : ` of ${total}`}` : "No cases";
  const pager = (label) =>
    h(
      "nav",
      { class: "pager", "aria-label": label },
      h(
        "button",
        {
          type: "button",
          disabled: !cursor,
          onclick: () => go(navigate, hashFor(filter, trail.cursors.pop() || "")),
        },
        "Previous",
      ),
      h("span", {}, shown),
      h(
        "button",
        {
          type: "button",
          disabled: !page.next,
          onclick: () => {
            trail.cursors.push(cursor);
            go(navigate, hashFor(filter, page.next));
          },
        },
        "Next",
      ),
    );

  fill(
    main,
    heading("Cases"),
    filters(filter, navigate),
    h(
      "section",
      { "aria-label": "Case list" },
      pager("Pages"),
      rows,
      page.items.length > 10 ? pager("Pages, at the bottom") : null,
    ),
    bulkPanel(filter, total, ctx),
  );
  if (sayCount) announce(`${shown}.`);
  sayCount = false;
}

function filters(filter, navigate) {
  const state = select("state", [["", "any state"], ...STATES.map((s) => [s, s])], filter.state);
  const orgs = current()?.orgs || [];
  const org = select("org", [["", "any org"], ...orgs.map((o) => [o, o])], filter.org);
  const mailbox = h("input", { name: "mailbox", type: "search", value: filter.mailbox, autocomplete: "off" });
  return h(
    "form",
    {
      class: "panel",
      novalidate: true,
      role: "search",
      "aria-label": "Filter cases",
      onsubmit: (event) => {
        event.preventDefault();
        go(navigate, hashFor({ state: state.value, org: org.value, mailbox: mailbox.value.trim() }, ""));
      },
    },
    h(
      "div",
      { class: "fields" },
      field("State", state, { hint: "open: held, decided or failed" }),
      field("Org", org),
      field("Mailbox", mailbox, { hint: "A full address or a part of one", wide: true }),
      h("div", { class: "field" }, h("button", { type: "submit", class: "primary" }, "Show")),
    ),
  );
}

function bulkPanel(filter, total, ctx) {
  if (!can("approver")) return null;
  const title = h("h2", { id: "bulk-title" }, "Decide every matching case");
  if (filter.state !== "held") {
    return h(
      "section",
      { "aria-labelledby": "bulk-title" },
      title,
      h(
        "p",
        { class: "muted" },
        "Filter on held cases to approve or deny them all at once. ",
        h("a", { href: hashFor({ ...filter, state: "held" }, "") }, "Show held cases"),
      ),
    );
  }
  if (total === 0) {
    return h(
      "section",
      { "aria-labelledby": "bulk-title" },
      title,
      h("p", { class: "muted" }, "No held case matches these filters."),
    );
  }
  const decision = select(
    "decision",
    [
      ["approve", "Approve (the claimant becomes the owner)"],
      ["deny", "Deny (the owner keeps it)"],
    ],
    "approve",
  );
  const reason = h("textarea", { name: "reason", required: true, maxlength: "1000", rows: "2" });
  const error = h("p", { class: "error-text", id: "bulk-error" });
  const form = h(
    "form",
    {
      class: "panel",
      novalidate: true,
      "aria-describedby": "bulk-error",
      onsubmit: (event) => {
        event.preventDefault();
        if (!reason.value.trim()) {
          error.textContent = "A reason is required: it goes into every case's history and the audit log.";
          reason.setAttribute("aria-invalid", "true");
          reason.focus();
          return;
        }
        reason.removeAttribute("aria-invalid");
        error.textContent = "";
        const box = confirmStep(filter, total, decision.value, reason.value.trim(), ctx, () => {
          box.replaceWith(form);
          reason.focus();
        });
        form.replaceWith(box);
        box.querySelector("button").focus();
      },
    },
    h(
      "p",
      {},
      total === null
        ? `Every case matching ${describeFilter(filter)}.`
        : `${total} held case${total === 1 ? "" : "s"} match ${describeFilter(filter)}.`,
    ),
    h("div", { class: "fields" }, field("Decision", decision), field("Reason", reason, { wide: true })),
    h("div", { class: "buttons" }, h("button", { type: "submit" }, "Review")),
    error,
  );
  return h("section", { "aria-labelledby": "bulk-title" }, title, form);
}

function confirmStep(filter, total, decision, reason, ctx, cancel) {
  const verb = decision === "approve" ? "Approve" : "Deny";
  const count = total === null ? "every matching case" : `${total} case${total === 1 ? "" : "s"}`;
  const go = h(
    "button",
    { type: "button", class: decision === "deny" ? "danger primary" : "primary" },
    `${verb} ${count}`,
  );
  const box = h(
    "div",
    { class: "panel confirm", id: "bulk-confirm", role: "group", "aria-labelledby": "bulk-confirm-text" },
    h(
      "p",
      { id: "bulk-confirm-text" },
      `${verb} ${count} matching ${describeFilter(filter)}, with the reason “${reason}”? Cases decided by someone else meanwhile are skipped.`,
    ),
    h("div", { class: "buttons" }, go, h("button", { type: "button", onclick: cancel }, "Cancel")),
  );
  go.addEventListener("click", async () => {
    go.disabled = true;
    announce(`${verb === "Approve" ? "Approving" : "Denying"} ${count}…`);
    try {
      const body = {
        filter: { state: filter.state, org: filter.org || undefined, mailbox: filter.mailbox || undefined },
        decision,
        reason,
      };
      // One request decides up to 500 cases and says when more match: ask again until none is left.
      let decided = 0;
      const skipped = [];
      for (let round = 0; round < 1000; round += 1) {
        const done = await api("/api/cases:bulk", { method: "POST", body });
        decided += done.decided;
        skipped.push(...(done.skipped || []));
        if (!done.more || done.decided === 0) break;
      }
      await ctx.refresh();
      announce(
        `${verb === "Approve" ? "Approved" : "Denied"} ${decided} case${decided === 1 ? "" : "s"}; ${skipped.length} skipped.`,
        "ok",
      );
      if (skipped.length) {
        ctx.main.append(
          h(
            "section",
            { "aria-labelledby": "skipped-title" },
            h("h2", { id: "skipped-title" }, "Skipped"),
            table(
              "Cases not decided",
              [
                {
                  label: "Case",
                  cell: (s) => h("a", { href: `#/cases/${encodeURIComponent(s.case)}` }, s.case.slice(0, 8)),
                },
                { label: "State", cell: (s) => badge("state", s.state) },
                { label: "Why", cell: (s) => s.reason },
              ],
              skipped,
            ),
          ),
        );
      }
    } catch (err) {
      go.disabled = false;
      announce(describe(err), "error");
    }
  });
  return box;
}
