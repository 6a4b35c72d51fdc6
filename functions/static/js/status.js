// The page's one live region: what just happened, read out by screen readers.

const region = () => document.getElementById("status");

export function announce(message, kind = "info") {
  const el = region();
  el.className = `status ${kind === "error" ? "error" : kind === "ok" ? "ok" : ""}`;
  el.textContent = "";
  // A fresh text node after clearing makes assistive technology read a repeated message again.
  requestAnimationFrame(() => {
    el.textContent = message;
  });
}

export function clear() {
  const el = region();
  el.className = "status";
  el.textContent = "";
}

export function describe(error) {
  if (error && error.problem) {
    const p = error.problem;
    return p.detail && p.title && p.detail !== p.title ? `${p.title}: ${p.detail}` : p.detail || p.title;
  }
  return String((error && error.message) || error);
}
