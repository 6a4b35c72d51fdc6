// The page's entry: sign-in, then hash routes (#/cases/<id>, #/mailboxes/<address>, ...) to views.

import { authMode, setToken } from "./api.js";
import { fill, h, heading } from "./elements.js";
import * as session from "./session.js";
import { announce, describe } from "./status.js";
import { caseView } from "./views/case.js";
import { casesView } from "./views/cases.js";
import { deadLettersView } from "./views/deadletters.js";
import { complianceView } from "./views/compliance.js";
import { environmentsView } from "./views/environments.js";
import { exemptionsView } from "./views/exemptions.js";
import { jobsView, jobView } from "./views/jobs.js";
import { mailboxSearchView, mailboxView } from "./views/mailbox.js";
import { overviewView } from "./views/overview.js";
import { policyView } from "./views/policy.js";

const ROUTES = [
  [/^#?\/?$/, "overview", overviewView],
  [/^#\/cases\/([^/?]+)$/, "cases", caseView],
  [/^#\/cases(?:\?.*)?$/, "cases", casesView],
  [/^#\/mailboxes\/([^?]+)$/, "mailboxes", mailboxView],
  [/^#\/mailboxes(?:\?.*)?$/, "mailboxes", mailboxSearchView],
  [/^#\/policy$/, "policy", policyView],
  [/^#\/exemptions(?:\?.*)?$/, "exemptions", exemptionsView],
  [/^#\/compliance(?:\?.*)?$/, "compliance", complianceView],
  [/^#\/environments$/, "environments", environmentsView],
  [/^#\/jobs$/, "jobs", jobsView],
  [/^#\/deadletters$/, "deadletters", deadLettersView],
  [/^#\/(sweeps|migrations)\/([^/?]+)$/, "jobs", jobView],
];

const main = () => document.getElementById("main");
let leaving = null;

function markNav(name) {
  for (const link of document.querySelectorAll("#nav a[data-route]")) {
    if (link.dataset.route === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function params() {
  const hash = window.location.hash;
  const at = hash.indexOf("?");
  return new URLSearchParams(at >= 0 ? hash.slice(at + 1) : "");
}

export function navigate(hash) {
  if (window.location.hash === hash) route();
  else window.location.hash = hash;
}

async function route() {
  if (leaving) leaving.abort();
  const controller = new AbortController();
  leaving = controller;
  if (!session.current()) return;
  const hash = window.location.hash || "#/";
  const found = ROUTES.find(([pattern]) => pattern.test(hash));
  const root = main();
  if (!found) {
    markNav("");
    fill(root, heading("Not found"), h("p", {}, "This page does not exist. ", h("a", { href: "#/" }, "Overview")));
    focusHeading(root);
    return;
  }
  const [pattern, name, view] = found;
  markNav(name);
  const args = pattern.exec(hash).slice(1).map(decodeURIComponent);
  const timers = [];
  controller.signal.addEventListener("abort", () => timers.forEach(clearInterval));
  const ctx = {
    main: root,
    args,
    params: params(),
    signal: controller.signal,
    navigate,
    /** Run ``fn`` every ``ms`` until the viewer leaves this view. */
    every(ms, fn) {
      timers.push(setInterval(() => controller.signal.aborted || fn(), ms));
    },
    refresh: () => route(),
  };
  try {
    await view(ctx);
    if (!controller.signal.aborted) focusHeading(root);
  } catch (err) {
    if (err.name === "AbortError" || controller.signal.aborted) return;
    failed(err, root);
  }
}

function focusHeading(root) {
  const h1 = root.querySelector("h1");
  if (h1 && !root.contains(document.activeElement)) h1.focus();
}

/** A view could not load: say why; a lost sign-in goes back to signing in. */
export function failed(err, root = main()) {
  // Locally the only credential is the admin token: refused means mistyped or replaced, so sign in again.
  if (err.status === 401 || (err.status === 403 && authMode === "token")) {
    if (err.status === 403) setToken("");
    signedOut(describe(err));
    return;
  }
  fill(root, heading("Something went wrong"), h("p", { class: "error-text" }, describe(err)));
  announce(describe(err), "error");
}

function signedOut(message) {
  session.forget();
  session.whoBox();
  markNav("");
  if (authMode === "easyauth") {
    if (session.toLogin()) return;
    fill(
      main(),
      heading("Sign in"),
      h(
        "p",
        {},
        message || "Your session has ended. ",
        h("a", { href: "/.auth/login/aad?post_login_redirect_uri=/" }, "Sign in again"),
      ),
    );
    return;
  }
  session.signInView(main(), signedIn, message);
}

function signedIn() {
  session.loggedIn();
  session.whoBox();
  route();
}

async function boot() {
  try {
    await session.load();
  } catch (err) {
    if (err.status === 401 || (err.status === 403 && authMode === "token")) {
      setToken("");
      signedOut(err.status === 403 ? describe(err) : "");
      return;
    }
    if (err.status === 403) {
      session.loggedIn();
      fill(
        main(),
        heading("No access"),
        h("p", { class: "error-text" }, describe(err)),
        h("p", {}, "Ask an administrator for the OrgGuard.Reader, OrgGuard.Approver or OrgGuard.Admin app role."),
      );
      return;
    }
    failed(err);
    return;
  }
  signedIn();
}

window.addEventListener("hashchange", () => route());
window.addEventListener("orgguard:signed-out", () => signedOut(""));
boot();
