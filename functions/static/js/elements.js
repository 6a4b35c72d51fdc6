// Building DOM nodes from data. Text always goes in as text (never as HTML): addresses and notes are untrusted.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** A table that becomes stacked cards on narrow screens (each cell labelled with its column). */
export function table(caption, columns, rows, { empty = "Nothing to show." } = {}) {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h(
    "table",
    { class: "cards" },
    h("caption", {}, caption),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)),
      ),
    ),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h(
          "tr",
          {},
          columns.map((c) => h("td", { "data-label": c.label, class: c.num ? "num" : null }, c.cell(row))),
        ),
      ),
    ),
  );
}

export function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.filter(Boolean).map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
  );
}

export function badge(kind, value) {
  return h("span", { class: `badge ${kind}-${value}` }, value);
}

let fieldCount = 0;

/** A labelled form control; ``control`` is an input, select or textarea element. */
export function field(label, control, { hint, wide = false } = {}) {
  fieldCount += 1;
  const id = control.id || `f${fieldCount}`;
  control.id = id;
  const hintEl = hint ? h("span", { class: "hint", id: `${id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: wide ? "field wide" : "field" }, h("label", { for: id }, label), control, hintEl);
}

/** A form in a panel that says itself what is wrong with its input, in words (so the browser's own checks are off).
 * ``labelled`` names it for assistive technology; ``submit(event)`` runs in place of the browser's submission. */
export function panelForm(labelled, submit, ...children) {
  const onsubmit = (event) => {
    event.preventDefault();
    return submit(event);
  };
  return h("form", { class: "panel", novalidate: true, ...labelled, onsubmit }, ...children);
}

export function select(name, options, value) {
  return h(
    "select",
    { name },
    options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)),
  );
}

/** The heading of a view; focused after navigation so keyboard and screen reader users land on it. */
export function heading(text) {
  return h("h1", { tabindex: "-1" }, text);
}

/** A section of a view, labelled by its own h2 (``id``) so assistive technology names it as a region. */
export function titled(id, title, ...children) {
  return h("section", { "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

/** Replace ``el``'s children; null, undefined and false children are left out. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}
