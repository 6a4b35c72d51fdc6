// The policy in force, and the what-if form: how OrgGuard would decide a claim, recording nothing.

import { api } from "../api.js";
import { facts, field, fill, h, heading, select, table } from "../elements.js";
import { current } from "../session.js";
import { announce, describe } from "../status.js";
import { effectText, policyEditor } from "./policy_editor.js";

const KINDS = [
  ["test_enable", "Test & Enable"],
  ["primary_flag", "“Sync from this org only” check box"],
  ["act_method", "ACT method set to server-side sync"],
];

export async function policyView(ctx) {
  const { main, signal } = ctx;
  const doc = await api("/api/policy", { signal });
  const policy = doc.policy || {};
  const rules = policy.rules || [];
  fill(
    main,
    heading("Policy"),
    h("section", { "aria-labelledby": "whatif-title" }, h("h2", { id: "whatif-title" }, "What if…"), whatIf()),
    h(
      "section",
      { "aria-labelledby": "rules-title" },
      h("h2", { id: "rules-title" }, `Version ${doc.version}`),
      facts([
        ["Mode", policy.mode],
        ["When no rule matches", policy.default],
        policy.approval
          ? ["Held cases expire after", `${policy.approval.expires_after} (then ${policy.approval.on_expiry})`]
          : null,
      ]),
      table(
        "Rules, first match wins",
        [
          { label: "Rule", cell: (r) => r.id },
          { label: "Effect", cell: (r) => `${effectText(r.effect)}${r.dry_run ? " (dry run)" : ""}` },
          { label: "When", cell: (r) => (r.when && Object.keys(r.when).length ? JSON.stringify(r.when) : "always") },
          { label: "Why", cell: (r) => r.description || "–" },
        ],
        rules,
        { empty: "No rules: every competing claim gets the default." },
      ),
      h(
        "details",
        {},
        h("summary", {}, "The policy as written"),
        h("pre", { class: "policy", tabindex: "0" }, doc.text || ""),
      ),
    ),
    policyEditor(ctx, doc),
  );
}

function whatIf() {
  const orgs = current()?.orgs || [];
  const orgChoices = orgs.map((o) => [o, o]);
  const mailbox = h("input", { name: "mailbox", type: "email", required: true, autocomplete: "off" });
  const claimant = orgChoices.length
    ? select("claimant", orgChoices, orgs[0])
    : h("input", { name: "claimant", required: true });
  const owner = select("owner", [["", "nobody / as recorded"], ...orgChoices], "");
  const kind = select("kind", KINDS, "test_enable");
  const answer = h("div", { id: "whatif-answer", "aria-live": "polite" });
  const form = h(
    "form",
    {
      class: "panel",
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        if (!mailbox.value.trim()) {
          fill(answer, h("p", { class: "error-text" }, "Enter the mailbox address."));
          mailbox.setAttribute("aria-invalid", "true");
          mailbox.focus();
          return;
        }
        mailbox.removeAttribute("aria-invalid");
        const body = { mailbox: mailbox.value.trim(), claimant: claimant.value, kind: kind.value };
        if (owner.value) body.owner = owner.value;
        try {
          const d = await api("/api/policy/evaluate", { method: "POST", body });
          fill(
            answer,
            h("h3", {}, `OrgGuard would ${d.effect}${d.dry_run ? " (dry run: record only)" : ""}`),
            facts([
              ["Rule", d.rule],
              ["Why", d.explanation],
              ["Recorded", d.recorded ? "yes" : "no: this was only a question"],
            ]),
          );
          announce(`What if: ${d.effect} by rule ${d.rule}.`);
        } catch (err) {
          fill(answer, h("p", { class: "error-text" }, describe(err)));
          announce(describe(err), "error");
        }
      },
    },
    h("p", { class: "muted" }, "How would OrgGuard decide if this org claimed this mailbox now? Nothing is recorded."),
    h(
      "div",
      { class: "fields" },
      field("Mailbox", mailbox, { wide: true }),
      field("Claimant org", claimant),
      field("Owner", owner, { hint: "Leave as recorded to use the ledger's owner" }),
      field("Claim", kind),
      h("div", { class: "field" }, h("button", { type: "submit", class: "primary" }, "Evaluate")),
    ),
    answer,
  );
  return form;
}
