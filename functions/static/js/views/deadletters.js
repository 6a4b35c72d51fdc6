// Dead letters: messages no consumer could settle, with why; an Admin replays or purges each one.

import { api } from "../api.js";
import { fill, h, heading, table } from "../elements.js";
import * as session from "../session.js";
import { announce, describe } from "../status.js";
import { when } from "../time.js";

function countText(counts) {
  const more = counts.at_least ? "+" : "";
  const per = Object.entries(counts.queues)
    .map(([queue, c]) => `${queue}: ${c.dead}${c.at_least ? "+" : ""}`)
    .join(", ");
  return `${counts.total}${more} dead letter${counts.total === 1 ? "" : "s"} (${per})`;
}

/** The overview's section: how many dead letters there are, linking to them; null without a queue. */
export async function deadLetterSummary(signal) {
  let doc;
  try {
    doc = await api("/api/deadletters?limit=1", { signal });
  } catch (err) {
    if (err.status === 404) return null; // no queue here (or an older OrgGuard): nothing to show
    throw err;
  }
  const total = doc.counts.total;
  return h(
    "section",
    { "aria-labelledby": "ov-dead" },
    h("h2", { id: "ov-dead" }, "Dead letters"),
    h(
      "p",
      { class: total ? "error-text" : "muted", id: "dead-count" },
      total ? h("a", { href: "#/deadletters" }, countText(doc.counts)) : "No dead letters.",
    ),
  );
}

function caseCell(d) {
  return d.case ? h("a", { href: `#/cases/${encodeURIComponent(d.case)}` }, d.case.slice(0, 8)) : d.message_id;
}

function act(ctx, d, verb) {
  const replay = verb === "replay";
  const label = replay ? "Replay" : "Purge";
  const button = h(
    "button",
    { type: "button", class: replay ? "primary" : "danger", "aria-label": `${label} ${d.id}` },
    label,
  );
  let armed = replay; // a purge asks once more: it cannot be undone
  button.addEventListener("click", async () => {
    if (!armed) {
      armed = true;
      button.textContent = "Purge for good";
      announce(`Purging ${d.id} removes it for good; press Purge for good to go on.`);
      return;
    }
    button.disabled = true;
    try {
      const path = `/api/deadletters/${encodeURIComponent(d.id)}`;
      await api(replay ? `${path}/replay` : path, { method: replay ? "POST" : "DELETE" });
      announce(replay ? `${d.id} is back in the ${d.queue} queue.` : `${d.id} was purged.`, "ok");
    } catch (err) {
      announce(describe(err), "error");
    }
    await ctx.refresh();
  });
  return button;
}

export async function deadLettersView(ctx) {
  const { main, signal } = ctx;
  let doc;
  try {
    doc = await api("/api/deadletters?limit=200", { signal });
  } catch (err) {
    if (err.status !== 404 || !err.problem || err.problem.title !== "No queue") throw err;
    fill(main, heading("Dead letters"), h("p", { class: "muted" }, describe(err)));
    return;
  }
  const admin = session.can("admin");
  const columns = [
    { label: "Dead letter", cell: (d) => h("code", {}, d.id) },
    { label: "Queue", cell: (d) => d.queue },
    { label: "Why", cell: (d) => [h("strong", {}, d.reason), d.description ? ` — ${d.description}` : ""] },
    { label: "Deliveries", num: true, cell: (d) => String(d.delivery_count) },
    { label: "Enqueued", cell: (d) => when(d.enqueued_at) },
    { label: "Case or message", cell: caseCell },
  ];
  if (admin) {
    columns.push({
      label: "Do",
      cell: (d) => h("div", { class: "buttons" }, act(ctx, d, "replay"), act(ctx, d, "purge")),
    });
  }
  fill(
    main,
    heading("Dead letters"),
    h("p", { id: "dead-total" }, countText(doc.counts)),
    admin
      ? h("p", { class: "muted" }, "Replay sends a message back to its queue as it was; purge removes it for good.")
      : h("p", { class: "muted" }, "Replaying and purging need the OrgGuard.Admin role."),
    table("Oldest first", columns, doc.items, { empty: "No dead letters." }),
  );
}
