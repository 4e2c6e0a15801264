// @vitest-environment jsdom
import { describe, expect, it, vi } from "vitest";
import { button, classToken, h, isSafeUrl, setChildren } from "../src/dom";

const XSS = "<img src=x onerror=alert(1)>";

describe("h()", () => {
  it("renders strings as text, never as markup", () => {
    const el = h("div", null, XSS, h("span", { title: XSS }, XSS));
    expect(el.querySelector("img")).toBeNull();
    expect(el.textContent).toBe(XSS + XSS);
    expect(el.querySelector("span")!.getAttribute("title")).toBe(XSS);
  });
  it("refuses inline event handler attributes", () => {
    expect(() => h("div", { onclick: "alert(1)" })).toThrow();
  });
  it("drops unsafe URLs", () => {
    const a = h("a", { href: "javascript:alert(1)" }, "x");
    expect(a.hasAttribute("href")).toBe(false);
    expect(h("img", { src: "/api/view?filename=a.png" }).getAttribute("src")).toBe("/api/view?filename=a.png");
    expect(isSafeUrl("//evil.example/x")).toBe(false);
    expect(isSafeUrl("https://example.com/")).toBe(true);
  });
  it("handles classes, styles, datasets, booleans and nested children", () => {
    const el = h(
      "button",
      { class: ["a", false, null, "b"], style: { width: "10%" }, dataset: { runId: "r1" }, disabled: true, hidden: false },
      ["x", null, ["y", 3]],
    );
    expect(el.className).toBe("a b");
    expect(el.style.width).toBe("10%");
    expect(el.dataset.runId).toBe("r1");
    expect(el.disabled).toBe(true);
    expect(el.hasAttribute("hidden")).toBe(false);
    expect(el.textContent).toBe("xy3");
  });
  it("makes real buttons", () => {
    const onClick = vi.fn();
    const b = button("Go", onClick);
    expect(b.type).toBe("button");
    b.click();
    expect(onClick).toHaveBeenCalledOnce();
  });
  it("replaces children", () => {
    const el = h("div", null, "old");
    setChildren(el, XSS);
    expect(el.childNodes.length).toBe(1);
    expect(el.firstChild!.nodeType).toBe(Node.TEXT_NODE);
  });
  it("sanitises class tokens from data", () => {
    expect(classToken('failed" onmouseover="x')).toBe("failedonmouseoverx");
    expect(classToken("not_run")).toBe("not_run");
  });
});
