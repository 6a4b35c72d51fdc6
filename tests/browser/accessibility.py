"""Checks a person relying on a keyboard, a screen reader or good contrast would notice, run inside the page.

Not a full WCAG audit: every form control and link has a name, and visible text keeps WCAG 2.2's minimum
contrast (4.5:1, large text 3:1) against the background it is drawn on. Disabled controls are exempt, as in WCAG.
"""

from __future__ import annotations

from typing import Any

CHECK = """
() => {
  const problems = [];
  const visible = (el) => {
    const s = getComputedStyle(el);
    return s.visibility !== "hidden" && s.display !== "none" && el.getClientRects().length > 0;
  };
  for (const el of document.querySelectorAll("input, select, textarea, button, a[href]")) {
    if (el.type === "hidden" || !visible(el)) continue;
    const labelled = el.labels && el.labels.length ? [...el.labels].map((l) => l.textContent).join(" ") : "";
    const own = ["BUTTON", "A"].includes(el.tagName) ? el.textContent : "";
    const name = (labelled || el.getAttribute("aria-label") || own).trim();
    if (!name) problems.push(`no accessible name: <${el.tagName.toLowerCase()} name="${el.name || ""}">`);
  }
  const rgb = (text) => {
    const m = text.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const luminance = ({ r, g, b }) => {
    const f = (c) => ((c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0) return c;
    }
    return { r: 255, g: 255, b: 255, a: 1 };
  };
  const seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const el = node.parentElement;
    if (!node.textContent.trim() || seen.has(el) || !visible(el) || el.closest("[disabled], noscript, .skip")) continue;
    seen.add(el);
    const style = getComputedStyle(el);
    const a = luminance(rgb(style.color));
    const b = luminance(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) {
      problems.push(`contrast ${ratio.toFixed(2)}:1 for "${node.textContent.trim().slice(0, 40)}"`);
    }
  }
  return problems;
}
"""


def check_accessible(page: Any) -> list[str]:
    problems: list[str] = page.evaluate(CHECK)
    return problems
