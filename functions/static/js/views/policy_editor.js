// A new policy version: written here or loaded from a file, its impact shown first (what would change, recorded
// nowhere), then saved by an Admin through PUT /api/policy. Saving is offered only for the text whose impact is
// on the screen: change a character and the impact must be asked for again.

import { api } from "../api.js";
import { facts, fill, h } from "../elements.js";
import { can } from "../session.js";
import { announce, describe } from "../status.js";

/** An effect as written: "block", or "gate: block, after: audit". */
export function effectText(effect) {
  if (effect && typeof effect === "object") {
    return Object.entries(effect)
      .map(([point, value]) => `${point}: ${value}`)
      .join(", ");
  }
  return String(effect);
}

export function policyEditor(ctx, current) {
  const editor = h("textarea", {
    id: "policy-text",
    name: "policy",
    class: "policy-editor",
    rows: "18",
    spellcheck: "false",
    "aria-describedby": "policy-text-hint",
  });
  editor.value = current.text || "";
  const upload = h("input", { id: "policy-file", type: "file", accept: ".yaml,.yml,.json,text/yaml,application/json" });
  const days = h("input", { id: "impact-days", name: "days", type: "number", min: "1", max: "365", value: "30" });
  const result = h("div", { id: "impact", class: "impact", "aria-live": "polite" });
  const save = h("button", { type: "button", class: "primary", disabled: true }, "Save this policy");
  let checked = null; // the text whose impact is shown

  editor.addEventListener("input", () => {
    if (checked !== null && editor.value !== checked) {
      checked = null;
      save.disabled = true;
      fill(result, h("p", { class: "muted" }, "The text changed: check its impact again before saving."));
    }
  });
  upload.addEventListener("change", async () => {
    const file = upload.files && upload.files[0];
    if (!file) return;
    editor.value = await file.text();
    editor.dispatchEvent(new Event("input"));
    announce(`Loaded ${file.name}; check its impact before saving.`);
  });

  const check = async () => {
    const text = editor.value;
    const span = Number(days.value);
    if (!Number.isInteger(span) || span < 1 || span > 365) {
      days.setAttribute("aria-invalid", "true");
      fill(result, h("p", { class: "error-text" }, "Days must be a whole number from 1 to 365."));
      days.focus();
      return;
    }
    days.removeAttribute("aria-invalid");
    try {
      const doc = await api(`/api/policy/impact?days=${span}`, { method: "POST", yaml: text });
      checked = text;
      save.disabled = !can("admin");
      fill(result, impactView(doc));
      announce(`Impact: ${doc.summary}.`);
    } catch (err) {
      checked = null;
      save.disabled = true;
      fill(result, problems(err));
      announce(describe(err), "error");
    }
  };

  save.addEventListener("click", async () => {
    if (checked === null || editor.value !== checked) return;
    save.disabled = true;
    try {
      const saved = await api("/api/policy", { method: "PUT", yaml: checked });
      announce(`Saved: the policy is now version ${saved.version}.`, "ok");
      ctx.refresh();
    } catch (err) {
      save.disabled = false;
      fill(result, problems(err));
      announce(describe(err), "error");
    }
  });

  return h(
    "section",
    { "aria-labelledby": "editor-title" },
    h("h2", { id: "editor-title" }, "Change the policy"),
    h(
      "p",
      { class: "muted", id: "policy-text-hint" },
      "Write the new version (YAML or JSON) or load a file, then check what it would change: held cases, the ",
      "competing claims of the last days, and owned mailboxes that would move. Nothing is recorded until an Admin ",
      "saves it.",
    ),
    h("div", { class: "field wide" }, h("label", { for: "policy-text" }, "New policy"), editor),
    h(
      "div",
      { class: "fields" },
      h("div", { class: "field" }, h("label", { for: "policy-file" }, "Or load a file"), upload),
      h("div", { class: "field" }, h("label", { for: "impact-days" }, "Claims of the last (days)"), days),
    ),
    h(
      "div",
      { class: "buttons" },
      h("button", { type: "button", onclick: check }, "Check the impact"),
      can("admin") ? save : h("span", { class: "muted" }, "Only an Admin can save a policy."),
    ),
    result,
  );
}

function problems(err) {
  const listed = err.problem && Array.isArray(err.problem.errors) ? err.problem.errors : [];
  return [
    h("p", { class: "error-text" }, describe(err)),
    listed.length
      ? h(
          "ul",
          { "aria-label": "Every error in the policy" },
          listed.map((e) => h("li", {}, e.path ? `${e.path}: ${e.message}` : e.message)),
        )
      : null,
  ];
}

function impactView(doc) {
  const part = (title, section) => {
    const found = doc[section];
    return [
      h("h3", {}, `${title}: ${found.changed} of ${found.examined} would change`),
      found.items.length
        ? h(
            "ul",
            {},
            found.items.map((i) =>
              h(
                "li",
                {},
                i.case ? h("a", { href: `#/cases/${encodeURIComponent(i.case)}` }, i.mailbox) : i.mailbox,
                `: ${i.outcome}`,
              ),
            ),
          )
        : null,
      found.truncated ? h("p", { class: "muted" }, "Only the first 500 are listed.") : null,
    ];
  };
  return [
    h(
      "p",
      {},
      h("strong", {}, `Version ${doc.candidate.version} against version ${doc.current.version}: `),
      doc.summary,
      ".",
    ),
    facts([
      ["Recorded", "nothing: this was only a question"],
      doc.on_expiry ? ["Held cases that expire", doc.on_expiry.outcome] : null,
      doc.candidate.warnings.length ? ["Warnings", doc.candidate.warnings.join(" ")] : null,
    ]),
    part("Held cases, if decided again", "held"),
    part("Competing claims of the last days", "claims"),
    part("Owned mailboxes", "ownerships"),
  ];
}
