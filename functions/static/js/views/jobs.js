// Sweeps and migrations: the list, starting one (Admin), and a job's live progress while it runs.

import { api } from "../api.js";
import { badge, facts, field, fill, h, heading, panelForm, select, table } from "../elements.js";
import { can, current } from "../session.js";
import { announce, describe } from "../status.js";
import { when } from "../time.js";

const RUNNING = new Set(["running"]);

function jobLink(job) {
  return h(
    "a",
    { href: `#/${job.kind === "sweep" ? "sweeps" : "migrations"}/${encodeURIComponent(job.id)}` },
    job.id.slice(0, 8),
  );
}

function summary(job) {
  const p = job.progress || {};
  if (job.kind === "migration") {
    const planned = p.planned ?? job.result?.plan?.moves?.length;
    const parts = [`${job.params.from} → ${job.params.to}`];
    if (planned !== undefined) parts.push(`${planned} planned`);
    if (p.settled !== undefined) parts.push(`${p.settled} settled`);
    if (p.failed) parts.push(`${p.failed} failed`);
    return parts.join(", ");
  }
  const r = job.result || {};
  if (r.mailboxes !== undefined) return `${r.mailboxes} mailboxes, ${r.conflicts_total ?? 0} conflicts`;
  return p.phase || "starting";
}

const COLUMNS = [
  { label: "Job", cell: jobLink },
  { label: "State", cell: (j) => badge("state", j.state) },
  { label: "Mode", cell: (j) => (j.params.apply ? "apply" : "dry run") },
  { label: "Progress", cell: summary },
  { label: "By", cell: (j) => j.actor },
  { label: "Started", cell: (j) => when(j.created_at) },
  { label: "Updated", cell: (j) => when(j.updated_at) },
];

export async function jobsView(ctx) {
  const { main, signal } = ctx;
  const [sweeps, migrations] = await Promise.all([api("/api/sweeps", { signal }), api("/api/migrations", { signal })]);
  fill(
    main,
    heading("Sweeps & migrations"),
    h(
      "section",
      { "aria-labelledby": "sweeps-title" },
      h("h2", { id: "sweeps-title" }, "Sweeps"),
      can("admin") ? startSweep(ctx) : null,
      table("Sweeps, newest first", COLUMNS, sweeps.items, { empty: "No sweep has run yet." }),
    ),
    h(
      "section",
      { "aria-labelledby": "migrations-title" },
      h("h2", { id: "migrations-title" }, "Migrations"),
      can("admin") ? startMigration(ctx) : null,
      table("Migrations, newest first", COLUMNS, migrations.items, { empty: "No migration yet." }),
    ),
  );
  if ([...sweeps.items, ...migrations.items].some((j) => RUNNING.has(j.state))) {
    ctx.every(3000, () => ctx.refresh());
  }
}

function orgBoxes(name) {
  const orgs = current()?.orgs || [];
  return h(
    "fieldset",
    { class: "field" },
    h("legend", {}, "Orgs (none ticked: all)"),
    orgs.map((o) => h("label", {}, h("input", { type: "checkbox", name, value: o }), ` ${o}`)),
  );
}

function applyBox() {
  return h(
    "label",
    {},
    h("input", { type: "checkbox", name: "apply" }),
    " Apply (otherwise a dry run that only reports)",
  );
}

function startSweep(ctx) {
  const form = panelForm(
    { "aria-label": "Start a sweep" },
    async () => {
      const orgs = [...form.querySelectorAll('input[name="orgs"]:checked')].map((i) => i.value);
      const apply = form.querySelector('input[name="apply"]').checked;
      try {
        const job = await api("/api/sweeps", { method: "POST", body: { orgs, apply } });
        announce(`Sweep ${job.id.slice(0, 8)} started.`, "ok");
        ctx.navigate(`#/sweeps/${job.id}`);
      } catch (err) {
        announce(describe(err), "error");
      }
    },
    h("div", { class: "fields" }, orgBoxes("orgs"), h("div", { class: "field" }, applyBox())),
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, "Start a sweep")),
  );
  return form;
}

function startMigration(ctx) {
  const orgs = (current()?.orgs || []).map((o) => [o, o]);
  const from = select("from", orgs, orgs[0]?.[0]);
  const to = select("to", orgs, orgs[1]?.[0]);
  const domain = h("input", { name: "domain", autocomplete: "off" });
  const mailboxes = h("textarea", { name: "mailboxes", rows: "3" });
  const error = h("p", { class: "error-text" });
  const form = panelForm(
    { "aria-label": "Start a migration" },
    async () => {
      const list = mailboxes.value.split(/[\s,;]+/).filter(Boolean);
      if (!domain.value.trim() === !list.length) {
        error.textContent = "Give either a domain or a list of mailboxes.";
        domain.focus();
        return;
      }
      error.textContent = "";
      const body = { from: from.value, to: to.value, apply: form.querySelector('input[name="apply"]').checked };
      if (list.length) body.mailboxes = list;
      else body.domain = domain.value.trim();
      try {
        const job = await api("/api/migrations", { method: "POST", body });
        announce(`Migration ${job.id.slice(0, 8)} started.`, "ok");
        ctx.navigate(`#/migrations/${job.id}`);
      } catch (err) {
        error.textContent = describe(err);
        announce(describe(err), "error");
      }
    },
    h(
      "div",
      { class: "fields" },
      field("From", from),
      field("To", to),
      field("Domain", domain, { hint: "every mailbox of this domain" }),
      field("Or mailboxes", mailboxes, { hint: "addresses, one a line", wide: true }),
    ),
    h("div", { class: "buttons" }, applyBox(), h("button", { type: "submit", class: "primary" }, "Start a migration")),
    error,
  );
  return form;
}

export async function jobView(ctx) {
  const { main, args, signal } = ctx;
  const [kind, id] = args;
  const path = `/api/${kind}/${encodeURIComponent(id)}`;
  const job = await api(path, { signal });
  fill(main, heading(`${kind === "sweeps" ? "Sweep" : "Migration"} ${job.id.slice(0, 8)}`), h("div", { id: "job" }));
  show(ctx, job);
  if (RUNNING.has(job.state)) {
    let state = job.state;
    ctx.every(1500, async () => {
      if (!RUNNING.has(state)) return;
      try {
        const fresh = await api(path, { signal });
        state = fresh.state;
        show(ctx, fresh);
        if (!RUNNING.has(state))
          announce(`The ${fresh.kind} is ${fresh.state}.`, fresh.state === "failed" ? "error" : "ok");
      } catch {
        /* the next tick tries again */
      }
    });
  }
}

function progressBar(job) {
  const p = job.progress || {};
  if (job.kind !== "migration" || !p.planned) return null;
  const done = Math.min(p.planned, (p.settled ?? 0) || (p.applied ?? 0) + (p.failed ?? 0));
  return h(
    "div",
    {},
    h("label", { for: "job-progress" }, `${done} of ${p.planned} moves settled`),
    h("progress", { id: "job-progress", max: String(p.planned), value: String(done) }, `${done} of ${p.planned}`),
  );
}

function show(ctx, job) {
  const box = ctx.main.querySelector("#job");
  if (!box) return;
  const p = job.progress || {};
  const r = job.result || {};
  fill(
    box,
    facts([
      ["State", badge("state", job.state)],
      ["Phase", p.phase || "–"],
      ["Mode", job.params.apply ? "apply" : "dry run"],
      job.kind === "migration"
        ? ["Move", `${job.params.from} → ${job.params.to}`]
        : ["Orgs", (job.params.orgs || []).join(", ") || "all"],
      ["Started", when(job.created_at)],
      ["Updated", when(job.updated_at)],
      ["By", job.actor],
      job.error ? ["Error", h("span", { class: "error-text" }, job.error)] : null,
    ]),
    progressBar(job),
    job.kind === "migration" && can("admin") ? controls(ctx, job) : null,
    figures("Progress", p),
    job.kind === "sweep" ? conflicts(r) : figures("Report", r),
  );
}

function figures(title, doc) {
  const simple = Object.entries(doc).filter(
    ([, v]) => v === null || ["string", "number", "boolean"].includes(typeof v),
  );
  if (!simple.length) return null;
  return h(
    "section",
    {},
    h("h2", {}, title),
    table(
      `${title}, figure by figure`,
      [
        { label: "Figure", cell: ([k]) => k.replaceAll("_", " ") },
        { label: "Value", cell: ([, v]) => String(v) },
      ],
      simple,
    ),
  );
}

function conflicts(r) {
  if (!r.conflicts) return null;
  return h(
    "section",
    {},
    figures("Findings", r),
    table(
      "Conflicts found",
      [
        {
          label: "Mailbox",
          cell: (c) => (c.mailbox ? h("a", { href: `#/mailboxes/${encodeURIComponent(c.mailbox)}` }, c.mailbox) : "–"),
        },
        { label: "Orgs", cell: (c) => (c.orgs || []).join(", ") },
        { label: "Found", cell: (c) => (c.kinds || []).map((k) => k.replaceAll("_", " ")).join(", ") || "–" },
        { label: "Owner (ledger)", cell: (c) => c.owner || "nobody" },
        { label: "Decision", cell: (c) => (c.effect ? `${c.effect}${c.winner ? ` → ${c.winner}` : ""}` : "–") },
      ],
      r.conflicts,
      { empty: "No conflicts." },
    ),
  );
}

function controls(ctx, job) {
  const act = (verb) => async () => {
    try {
      await api(`/api/migrations/${encodeURIComponent(job.id)}/${verb}`, { method: "POST" });
      announce(`Migration ${verb === "resume" ? "resumed" : verb === "pause" ? "paused" : "cancelled"}.`, "ok");
    } catch (err) {
      announce(describe(err), "error");
    }
    ctx.refresh();
  };
  const buttons = [];
  if (job.state === "running") buttons.push(h("button", { type: "button", onclick: act("pause") }, "Pause"));
  if (job.state === "paused") buttons.push(h("button", { type: "button", onclick: act("resume") }, "Resume"));
  if (job.state === "running" || job.state === "paused") {
    buttons.push(h("button", { type: "button", class: "danger", onclick: act("cancel") }, "Cancel"));
  }
  return buttons.length ? h("div", { class: "buttons" }, buttons) : null;
}
