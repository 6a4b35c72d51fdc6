// One case: its decision and why, each action with its attempts and last error, the history, and the
// approver's Approve / Deny (with a required reason). A 409 means someone else decided first: say so, refresh.

import { api } from "../api.js";
import { badge, facts, field, fill, h, heading, panelForm, table } from "../elements.js";
import { can } from "../session.js";
import { announce, describe } from "../status.js";
import { when } from "../time.js";

const SETTLING = new Set(["decided", "failed"]);

export async function caseView(ctx) {
  const { args, signal } = ctx;
  const id = args[0];
  const c = await api(`/api/cases/${encodeURIComponent(id)}`, { signal });
  render(ctx, c);
  // While OrgGuard carries the decision out, follow it (the executor runs in the background).
  let last = JSON.stringify(c);
  ctx.every(2000, async () => {
    if (!settling(JSON.parse(last))) return;
    try {
      const fresh = await api(`/api/cases/${encodeURIComponent(id)}`, { signal });
      const text = JSON.stringify(fresh);
      if (text !== last) {
        last = text;
        render(ctx, fresh, { keepFocus: true });
        announce(`The case is now ${fresh.state}.`);
      }
    } catch {
      /* the next tick tries again */
    }
  });
}

function settling(c) {
  return SETTLING.has(c.state) && c.actions.some((a) => a.status === "pending");
}

function render(ctx, c, { keepFocus = false } = {}) {
  const { main } = ctx;
  const focusedId = keepFocus && document.activeElement ? document.activeElement.id : null;
  const decision = c.decision;
  fill(
    main,
    heading(`Case ${c.id.slice(0, 8)}`),
    h(
      "section",
      { "aria-labelledby": "case-summary" },
      h("h2", { id: "case-summary" }, "What happened"),
      facts([
        ["Mailbox", h("a", { href: `#/mailboxes/${encodeURIComponent(c.mailbox)}` }, c.mailbox)],
        ["State", badge("state", c.state)],
        ["Claimant", `${c.claimant} (${c.kind.replace("_", " ")} via ${c.origin})`],
        ["Owner at claim time", c.owner || "nobody"],
        ["Decision", `${decision.effect}${decision.dry_run ? " (dry run: recorded, not carried out)" : ""}`],
        ["Rule", decision.rule],
        ["Explanation", decision.explanation],
        decision.exemption
          ? ["Exemption", h("a", { href: "#/exemptions" }, `exemption ${decision.exemption.slice(0, 8)}`)]
          : null,
        ["Created", when(c.created_at)],
        c.state === "held" ? ["Expires", when(c.expires_at, { withRelative: true })] : null,
        ["Case id", h("code", {}, c.id)],
      ]),
    ),
    c.state === "held" ? decide(ctx, c) : null,
    actions(ctx, c),
    history(c),
  );
  if (focusedId) document.getElementById(focusedId)?.focus();
}

function decide(ctx, c) {
  const title = h("h2", { id: "decide-title" }, "Decide");
  if (!can("approver")) {
    return h(
      "section",
      { "aria-labelledby": "decide-title" },
      title,
      h("p", { class: "muted" }, "This case waits for an approver (the OrgGuard.Approver role)."),
    );
  }
  const reason = h("textarea", { id: "decide-reason", name: "reason", required: true, maxlength: "1000", rows: "3" });
  const error = h("p", { class: "error-text", id: "decide-error" });
  const approve = h("button", { type: "submit", class: "primary", value: "approve", id: "approve" }, "Approve");
  const deny = h("button", { type: "submit", class: "danger", value: "deny", id: "deny" }, "Deny");
  const form = panelForm(
    { "aria-describedby": "decide-error" },
    async (event) => {
      const verb = event.submitter?.value === "deny" ? "deny" : "approve";
      if (!reason.value.trim()) {
        error.textContent = "A reason is required: it is kept in the case's history and the audit log.";
        reason.setAttribute("aria-invalid", "true");
        reason.focus();
        return;
      }
      approve.disabled = deny.disabled = true;
      try {
        const done = await api(`/api/cases/${encodeURIComponent(c.id)}/${verb}`, {
          method: "POST",
          body: { reason: reason.value.trim() },
        });
        await ctx.refresh();
        announce(
          verb === "approve"
            ? `Approved: ${done.claimant} becomes the owner of ${done.mailbox}.`
            : `Denied: ${done.owner || "the owner"} keeps ${done.mailbox}.`,
          "ok",
        );
      } catch (err) {
        if (err.status === 409) {
          // Someone decided first: show the case as it is now, and say what happened.
          await ctx.refresh();
          announce(`Not ${verb === "approve" ? "approved" : "denied"}: ${describe(err)}`, "error");
          return;
        }
        approve.disabled = deny.disabled = false;
        error.textContent = describe(err);
        announce(describe(err), "error");
      }
    },
    h(
      "p",
      {},
      `Approve: ${c.claimant} becomes the owner and the other orgs are set to None. `,
      `Deny: ${c.owner || "the owner"} keeps the mailbox and ${c.claimant} is set to None.`,
    ),
    field("Reason", reason, { hint: "Required. Kept in the case's history and the audit log.", wide: true }),
    h("div", { class: "buttons" }, approve, deny),
    error,
  );
  return h("section", { "aria-labelledby": "decide-title" }, title, form);
}

function actions(ctx, c) {
  const columns = [
    { label: "Action", cell: (a) => `${a.kind} in ${a.org}` },
    { label: "Status", cell: (a) => badge("status", a.status) },
    { label: "Attempts", num: true, cell: (a) => String(a.attempts) },
    { label: "Last error", cell: (a) => a.last_error || "–" },
    { label: "Updated", cell: (a) => when(a.updated_at) },
  ];
  if (can("admin")) {
    columns.push({
      label: "Retry",
      cell: (a) => (a.status === "failed" ? retryButton(ctx, a) : "–"),
    });
  }
  return h(
    "section",
    { "aria-labelledby": "actions-title" },
    h("h2", { id: "actions-title" }, "Actions"),
    table("Writes to the orgs", columns, c.actions, {
      empty:
        c.state === "held"
          ? "Nothing is written to the orgs until someone decides."
          : "This decision writes nothing to the orgs.",
    }),
  );
}

function retryButton(ctx, a) {
  const button = h("button", { type: "button", "aria-label": `Retry ${a.kind} in ${a.org}` }, "Retry");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api(`/api/actions/${encodeURIComponent(a.id)}/retry`, { method: "POST" });
      announce(`The ${a.kind} in ${a.org} is queued again.`, "ok");
    } catch (err) {
      announce(describe(err), "error");
    }
    await ctx.refresh();
  });
  return button;
}

function history(c) {
  return h(
    "section",
    { "aria-labelledby": "history-title" },
    h("h2", { id: "history-title" }, "History"),
    table(
      "Each step, oldest first",
      [
        { label: "When", cell: (e) => when(e.at) },
        { label: "State", cell: (e) => badge("state", e.state) },
        { label: "By", cell: (e) => e.actor },
        { label: "Note", cell: (e) => e.note },
      ],
      c.history,
    ),
  );
}
