"""The dashboard page: static HTML that reads the admin API with the caller's own credentials."""

DASHBOARD_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>OrgGuard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#1b1b1b}
 h1{font-size:1.4rem} table{border-collapse:collapse;width:100%;margin-top:1rem}
 th,td{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
 th{background:#f4f4f4} .held{color:#a15c00} .failed{color:#b00020} .applied{color:#1a7f37}
 #status{margin:.5rem 0;color:#555} input{width:24rem}
</style></head>
<body>
<h1>OrgGuard &mdash; cases</h1>
<p>Token (local only; behind App Service Authentication leave empty):
 <input id="token" type="password" autocomplete="off"> <button id="load">Load</button>
 <select id="state"><option value="">all states</option><option>held</option><option>decided</option>
 <option>applied</option><option>failed</option><option>denied</option><option>expired</option></select></p>
<div id="status"></div>
<table><thead><tr><th>created</th><th>mailbox</th><th>owner</th><th>claimant</th><th>decision</th>
<th>state</th><th>actions</th></tr></thead><tbody id="rows"></tbody></table>
<script>
const $ = (id) => document.getElementById(id);
$("token").value = sessionStorage.getItem("orgguard-token") || "";
function cell(text, cls) { const td = document.createElement("td"); td.textContent = text;
  if (cls) td.className = cls; return td; }
async function load() {
  const token = $("token").value.trim(); sessionStorage.setItem("orgguard-token", token);
  const headers = token ? {Authorization: "Bearer " + token} : {};
  const state = $("state").value;
  const res = await fetch("/api/cases?limit=100" + (state ? "&state=" + state : ""), {headers});
  if (!res.ok) { $("status").textContent = "The API answered " + res.status; return; }
  const page = await res.json(); const rows = $("rows"); rows.replaceChildren();
  for (const c of page.items) {
    const tr = document.createElement("tr");
    tr.append(cell(c.created_at.slice(0, 19)), cell(c.mailbox), cell(c.owner || "-"), cell(c.claimant),
      cell(c.decision.effect + " (" + c.decision.rule + ")" + (c.decision.dry_run ? " dry-run" : "")),
      cell(c.state, c.state), cell(c.actions.map(a => a.kind + "@" + a.org + ":" + a.status).join(", ")));
    tr.title = c.decision.explanation; rows.append(tr);
  }
  $("status").textContent = page.items.length + " case(s)" + (page.next ? " (more on the API)" : "");
}
$("load").onclick = load; $("state").onchange = load; load();
</script></body></html>
"""
