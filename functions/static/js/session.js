// Who is signed in, and what the page may offer them (the API checks every request again).

import { api, authMode, LOGIN, LOGOUT, setToken, token } from "./api.js";
import { field, fill, h, heading, panelForm } from "./elements.js";
import { announce, describe } from "./status.js";

const RANK = { reader: 1, approver: 2, admin: 3 };
let me = null;

export function current() {
  return me;
}

/** Whether the signed-in caller holds ``role`` or a higher one. */
export function can(role) {
  return Boolean(me) && RANK[me.role] >= RANK[role];
}

export async function load() {
  me = await api("/api/me");
  return me;
}

export function forget() {
  me = null;
}

/** Behind App Service Authentication: the platform's login, once per tab (no loop if it keeps failing). */
export function toLogin() {
  if (sessionStorage.getItem("orgguard-login-tried")) return false;
  sessionStorage.setItem("orgguard-login-tried", "1");
  window.location.assign(LOGIN);
  return true;
}

export function loggedIn() {
  sessionStorage.removeItem("orgguard-login-tried");
}

export function whoBox() {
  const box = document.getElementById("who");
  box.replaceChildren();
  if (!me) return;
  const out =
    authMode === "easyauth"
      ? h("a", { href: LOGOUT }, "Sign out")
      : h(
          "button",
          {
            type: "button",
            onclick: () => {
              setToken("");
              forget();
              window.dispatchEvent(new CustomEvent("orgguard:signed-out"));
            },
          },
          "Sign out",
        );
  box.append(h("span", {}, me.name), h("span", { class: "role", "aria-label": `role ${me.role}` }, me.role), out);
}

/** The local sign-in: the admin token, kept in this tab's sessionStorage only. */
export function signInView(main, onSignedIn, message) {
  const input = h("input", {
    type: "password",
    name: "token",
    autocomplete: "off",
    required: true,
    spellcheck: "false",
  });
  const error = h("p", { class: "error-text", id: "signin-error" }, message || "");
  const form = panelForm(
    { "aria-describedby": "signin-error" },
    async () => {
      const value = input.value.trim();
      if (!value) {
        error.textContent = "Enter the admin token.";
        input.setAttribute("aria-invalid", "true");
        input.focus();
        return;
      }
      setToken(value);
      try {
        await load();
      } catch (err) {
        setToken("");
        error.textContent = describe(err);
        input.setAttribute("aria-invalid", "true");
        input.focus();
        return;
      }
      announce(`Signed in as ${me.name}.`, "ok");
      onSignedIn();
    },
    h(
      "div",
      { class: "fields" },
      field("Admin token", input, {
        hint: "Printed by `orgguard serve` (ORGGUARD_ADMIN_TOKEN). Kept in this tab only.",
        wide: true,
      }),
    ),
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, "Sign in")),
    error,
  );
  fill(main, heading("Sign in"), form);
  input.focus();
  if (token()) input.value = token();
}
