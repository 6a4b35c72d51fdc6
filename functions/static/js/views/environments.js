// Every environment of the tenant (the Dataverse Global Discovery Service), and which of them OrgGuard hears.
// Registering one writes the orgs file and the org's own webhook steps: that is `orgguard discover --register`.

import { api } from "../api.js";
import { fill, h, heading, table } from "../elements.js";

export async function environmentsView({ main, signal }) {
  const doc = await api("/api/discovery", { signal });
  const items = doc.environments;
  const waiting = items.filter((e) => !e.registered && e.state === "enabled").map((e) => e.name);
  fill(
    main,
    heading("Environments"),
    h(
      "p",
      { class: "muted" },
      `What the Global Discovery Service at ${doc.discovery} shows OrgGuard: ${items.length} environment(s), `,
      `${items.filter((e) => e.registered).length} registered.`,
    ),
    table(
      "Environments of the tenant",
      [
        { label: "Environment", cell: (e) => e.friendly_name },
        { label: "Name", cell: (e) => e.name },
        { label: "Type", cell: (e) => e.type || `– (${e.organization_type})` },
        { label: "State", cell: (e) => e.state },
        { label: "OrgGuard", cell: (e) => (e.registered ? `registered as ${e.registered_as}` : "not registered") },
        { label: "URL", cell: (e) => e.url },
      ],
      items,
      { empty: "The discovery service shows no environment." },
    ),
    waiting.length
      ? h(
          "section",
          { "aria-labelledby": "env-register" },
          h("h2", { id: "env-register" }, "Register the others"),
          h(
            "p",
            {},
            "An Admin registers them in one step from a terminal signed in to the tenant: it adds each to the orgs ",
            "file with a new webhook key and its type, and registers OrgGuard's webhooks in each org.",
          ),
          h(
            "pre",
            { class: "policy", tabindex: "0" },
            `orgguard discover ${waiting.map((n) => `--register ${n}`).join(" ")} --url ${window.location.origin}`,
          ),
        )
      : null,
  );
}
