/**
 * The only way the panel builds DOM: `h(tag, attrs, ...children)`.
 *
 * Children that are strings or numbers become text nodes, attribute values go through `setAttribute` and event
 * handlers through `addEventListener`. There is no `innerHTML` anywhere in the panel, so a workflow named
 * `<img src=x onerror=alert(1)>` is shown as exactly those characters.
 */

export type Child = Node | string | number | null | undefined | false | readonly Child[];

export interface Attrs {
  class?: string | null | (string | false | null | undefined)[];
  style?: Partial<Record<string, string>>;
  dataset?: Record<string, string>;
  on?: Partial<{ [K in keyof HTMLElementEventMap]: (event: HTMLElementEventMap[K]) => void }>;
  [attribute: string]: unknown;
}

const URL_ATTRIBUTES = new Set(["href", "src", "action", "formaction", "xlink:href"]);

/** Only same-origin relative paths and http(s) URLs are allowed in URL attributes (never `javascript:`). */
export function isSafeUrl(url: string): boolean {
  const trimmed = url.trim();
  if (trimmed.startsWith("/") && !trimmed.startsWith("//")) return true;
  if (trimmed.startsWith("./") || trimmed.startsWith("../") || trimmed.startsWith("?")) return true;
  return /^https?:\/\//i.test(trimmed);
}

/** A CSS class token made from data (a status, a severity): anything but [a-z0-9_-] is dropped. */
export function classToken(value: unknown): string {
  return String(value ?? "")
    .toLowerCase()
    .replace(/[^a-z0-9_-]/g, "");
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) applyAttrs(el, attrs);
  append(el, children);
  return el;
}

function applyAttrs(el: HTMLElement, attrs: Attrs): void {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") {
      const classes = Array.isArray(value) ? value.filter(Boolean).join(" ") : String(value);
      if (classes) el.className = classes;
    } else if (key === "style") {
      for (const [prop, v] of Object.entries(value as Record<string, string>)) {
        if (v !== undefined) el.style.setProperty(prop, v);
      }
    } else if (key === "dataset") {
      for (const [k, v] of Object.entries(value as Record<string, string>)) el.dataset[k] = v;
    } else if (key === "on") {
      for (const [event, handler] of Object.entries(value as Record<string, EventListener>)) {
        if (handler) el.addEventListener(event, handler);
      }
    } else if (key.startsWith("on")) {
      throw new Error(`h(): use {on: {...}} for event handlers, not the attribute ${key}`);
    } else if (URL_ATTRIBUTES.has(key)) {
      const url = String(value);
      if (isSafeUrl(url)) el.setAttribute(key, url);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
}

export function append(el: Node, children: readonly Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (typeof child === "string" || typeof child === "number") el.appendChild(document.createTextNode(String(child)));
    else el.appendChild(child as Node);
  }
}

/** Replaces an element's content (`replaceChildren` with the same child rules as `h`). */
export function setChildren(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

/** A `<button type="button">`: every clickable thing in the panel is a real button (keyboard and screen readers). */
export function button(
  label: Child,
  onClick: (event: MouseEvent) => void,
  attrs: Attrs = {},
): HTMLButtonElement {
  return h("button", { type: "button", ...attrs, on: { ...(attrs.on ?? {}), click: onClick } }, label);
}
