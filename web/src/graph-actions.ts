/**
 * "Apply to a copy": a recommendation's graph changes (`actions` of GET /telemetry/recommendations, made by
 * telemetry/analysis/actions.py) applied to a deep copy of a UI (litegraph) workflow. Pure functions over the
 * serialised workflow; the user's own graph is never touched, and `comfy.ts` opens the copy in a new tab.
 *
 * - A change `{node_id, input, to}` sets that widget of the node: its index in `widgets_values` is the index of the
 *   widget of that name on a fresh node of the type (`NodeTemplate.widgetNames`, from the frontend's own node class,
 *   so hidden widgets such as `control_after_generate` count as they do in the frontend). A `widgets_values`
 *   object (some custom nodes) is set by name.
 * - A change `{node_id, replace_class_type}` puts a fresh node of the new type (`NodeTemplate.node`) in place of
 *   the old one: same id, position, mode and order, its links kept by input / output name (then by type), every
 *   link record updated to the new slots. Links the new type has no slot for are removed and reported.
 * - Every changed node is coloured (`HIGHLIGHT`) and says what changed in `properties["Run Telemetry"]`.
 * - Nodes inside subgraphs (ids like "12:5") are not changed: reported as skipped.
 */

import type { GraphChange, RecommendationAction } from "./types";

export interface SerializedSlot {
  name: string;
  type?: unknown;
  link?: number | null;
  links?: number[] | null;
  slot_index?: number;
  [key: string]: unknown;
}

export interface SerializedNode {
  id: number | string;
  type: string;
  pos?: unknown;
  size?: unknown;
  flags?: unknown;
  order?: number;
  mode?: number;
  title?: string;
  color?: string;
  bgcolor?: string;
  inputs?: SerializedSlot[];
  outputs?: SerializedSlot[];
  properties?: Record<string, unknown>;
  widgets_values?: unknown[] | Record<string, unknown>;
  [key: string]: unknown;
}

/** A link as version 0.4 workflows store it ([id, origin id, origin slot, target id, target slot, type]) or as
 * version 1 objects. */
export type SerializedLink =
  | [number, number | string, number, number | string, number, unknown]
  | { id: number; origin_id: number | string; origin_slot: number; target_id: number | string; target_slot: number; type?: unknown };

export interface Workflow {
  id?: string;
  nodes: SerializedNode[];
  links?: SerializedLink[];
  extra?: Record<string, unknown>;
  [key: string]: unknown;
}

/** What a fresh node of a type looks like in this frontend: its widget names (in `widgets_values` order) and its
 * serialisation (default widget values, input and output slots). */
export interface NodeTemplate {
  widgetNames: string[];
  node: SerializedNode;
}

export type TemplateOf = (type: string) => NodeTemplate | null;

export interface ApplyResult {
  workflow: Workflow;
  /** Ids of the nodes changed (and highlighted). */
  changed: string[];
  /** What could not be applied, in words. */
  skipped: string[];
}

export const HIGHLIGHT = { color: "#b35c00", bgcolor: "#6b3a08" } as const;
export const PROPERTY = "Run Telemetry";

function clone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

function findNode(workflow: Workflow, nodeId: string): SerializedNode | undefined {
  return workflow.nodes.find((n) => String(n.id) === nodeId);
}

/** The class each changed node must have in the workflow: the class of its first change (before a replacement). */
function expectedClasses(changes: readonly GraphChange[]): Map<string, string> {
  const expected = new Map<string, string>();
  for (const c of changes) if (!expected.has(c.node_id)) expected.set(c.node_id, c.class_type);
  return expected;
}

/** Whether `workflow` is the graph the changes were made for: every node they name is there, of the class the
 * run had (subgraph nodes aside, which are skipped anyway). */
export function matchesWorkflow(workflow: Workflow | null | undefined, changes: readonly GraphChange[]): boolean {
  if (!workflow || !Array.isArray(workflow.nodes)) return false;
  let found = 0;
  for (const [nodeId, type] of expectedClasses(changes)) {
    if (nodeId.includes(":")) continue;
    if (findNode(workflow, nodeId)?.type !== type) return false;
    found += 1;
  }
  return found > 0;
}

function linkParts(link: SerializedLink): { id: number; origin: string; target: string } {
  return Array.isArray(link)
    ? { id: link[0], origin: String(link[1]), target: String(link[3]) }
    : { id: link.id, origin: String(link.origin_id), target: String(link.target_id) };
}

function setLinkSlot(link: SerializedLink, end: "origin" | "target", slot: number): void {
  if (Array.isArray(link)) link[end === "origin" ? 2 : 4] = slot;
  else if (end === "origin") link.origin_slot = slot;
  else link.target_slot = slot;
}

/** The slot of `slots` for an old slot: by name, else the first free one of the same type. */
function slotFor(slots: SerializedSlot[], old: SerializedSlot, taken: Set<number>): number {
  const byName = slots.findIndex((s, i) => s.name === old.name && !taken.has(i));
  if (byName >= 0) return byName;
  return slots.findIndex((s, i) => !taken.has(i) && s.type !== undefined && s.type === old.type);
}

function removeLink(workflow: Workflow, linkId: number): void {
  if (!workflow.links) return;
  const index = workflow.links.findIndex((l) => linkParts(l).id === linkId);
  if (index < 0) return;
  const { origin, target } = linkParts(workflow.links[index]);
  workflow.links.splice(index, 1);
  for (const out of findNode(workflow, origin)?.outputs ?? []) {
    if (out.links) out.links = out.links.filter((id) => id !== linkId);
  }
  for (const input of findNode(workflow, target)?.inputs ?? []) if (input.link === linkId) input.link = null;
}

function replaceNode(workflow: Workflow, index: number, template: NodeTemplate, skipped: string[]): void {
  const old = workflow.nodes[index];
  const fresh = clone(template.node);
  const nodeId = String(old.id);
  fresh.id = old.id;
  if (old.pos !== undefined) fresh.pos = clone(old.pos);
  if (old.flags !== undefined) fresh.flags = clone(old.flags);
  if (old.order !== undefined) fresh.order = old.order;
  if (old.mode !== undefined) fresh.mode = old.mode;
  delete fresh.title;
  const linkById = new Map((workflow.links ?? []).map((l) => [linkParts(l).id, l] as const));
  const inputs: SerializedSlot[] = (fresh.inputs ?? []).map((s) => ({ ...s, link: null }));
  const outputs = (fresh.outputs ?? []).map((s) => ({ ...s, links: [] as number[] }));
  const dropped: number[] = [];
  const takenIn = new Set<number>();
  for (const input of old.inputs ?? []) {
    if (input.link === null || input.link === undefined) continue;
    const slot = slotFor(inputs, input, takenIn);
    const link = linkById.get(input.link);
    if (slot < 0 || !link) {
      dropped.push(input.link);
      skipped.push(`node ${nodeId}: ${fresh.type} has no input for '${input.name}'; its link was removed`);
      continue;
    }
    takenIn.add(slot);
    inputs[slot].link = input.link;
    setLinkSlot(link, "target", slot);
  }
  const takenOut = new Set<number>();
  for (const output of old.outputs ?? []) {
    const links = output.links ?? [];
    if (links.length === 0) continue;
    const slot = slotFor(outputs, output, takenOut);
    if (slot < 0) {
      dropped.push(...links);
      skipped.push(`node ${nodeId}: ${fresh.type} has no output for '${output.name}'; its links were removed`);
      continue;
    }
    takenOut.add(slot);
    outputs[slot].links = [...links];
    outputs[slot].slot_index = slot;
    for (const id of links) {
      const link = linkById.get(id);
      if (link) setLinkSlot(link, "origin", slot);
    }
  }
  fresh.inputs = inputs;
  fresh.outputs = outputs;
  workflow.nodes[index] = fresh;
  for (const id of dropped) removeLink(workflow, id);
}

function setWidget(node: SerializedNode, change: GraphChange, templateOf: TemplateOf): string | null {
  const name = change.input ?? "";
  const values = node.widgets_values;
  if (values && !Array.isArray(values) && typeof values === "object") {
    if (!(name in values)) return `node ${node.id}: ${node.type} has no widget '${name}'`;
    values[name] = change.to;
    return null;
  }
  const names = templateOf(node.type)?.widgetNames;
  const index = names ? names.indexOf(name) : -1;
  if (index < 0) return `node ${node.id}: ${node.type} has no widget '${name}' in this frontend`;
  const list = Array.isArray(values) ? values : [];
  while (list.length <= index) list.push(null);
  list[index] = change.to;
  node.widgets_values = list;
  return null;
}

function describe(change: GraphChange): string {
  if (change.replace_class_type) return `${change.class_type} → ${change.replace_class_type}`;
  return `${change.input} ${change.from === null || change.from === undefined ? "" : `${String(change.from)} → `}${String(change.to)}`;
}

/** `changes` applied to a deep copy of `workflow` (which is left as it was). */
export function applyChanges(workflow: Workflow, changes: readonly GraphChange[], templateOf: TemplateOf): ApplyResult {
  const copy = clone(workflow);
  const changed: string[] = [];
  const skipped: string[] = [];
  const notes = new Map<string, string[]>();
  for (const change of changes) {
    if (change.node_id.includes(":")) {
      skipped.push(`node ${change.node_id} is inside a subgraph: change it there by hand (${describe(change)})`);
      continue;
    }
    const index = copy.nodes.findIndex((n) => String(n.id) === change.node_id);
    if (index < 0) {
      skipped.push(`node ${change.node_id} (${change.class_type}) is not in this workflow`);
      continue;
    }
    let problem: string | null = null;
    if (change.replace_class_type) {
      const template = templateOf(change.replace_class_type);
      if (!template) problem = `this ComfyUI has no node type ${change.replace_class_type}`;
      else replaceNode(copy, index, template, skipped);
    } else {
      problem = setWidget(copy.nodes[index], change, templateOf);
    }
    if (problem) {
      skipped.push(problem);
      continue;
    }
    if (!changed.includes(change.node_id)) changed.push(change.node_id);
    notes.set(change.node_id, [...(notes.get(change.node_id) ?? []), describe(change)]);
  }
  for (const nodeId of changed) {
    const node = findNode(copy, nodeId);
    if (!node) continue;
    node.color = HIGHLIGHT.color;
    node.bgcolor = HIGHLIGHT.bgcolor;
    node.properties = { ...(node.properties ?? {}), [PROPERTY]: `changed: ${(notes.get(nodeId) ?? []).join("; ")}` };
  }
  return { workflow: copy, changed, skipped };
}

/** One workflow per copy the action makes: split_scenes makes one per scene, every other kind one. */
export function copiesOf(action: RecommendationAction): { title: string; changes: GraphChange[] }[] {
  if (action.copies && action.copies.length > 0) {
    return action.copies.map((c) => ({ title: c.title, changes: [...action.changes, ...c.changes] }));
  }
  return [{ title: action.title, changes: action.changes }];
}

/** Every change of an action, over all its copies (to check the workflow is the one it was made for). */
export function allChanges(action: RecommendationAction): GraphChange[] {
  return copiesOf(action).flatMap((c) => c.changes);
}

/** The copy's own identity: a new workflow id (its runs are its own), and where it came from in `extra`. */
export function asNewWorkflow(workflow: Workflow, newId: string, origin: Record<string, unknown>): Workflow {
  return { ...workflow, id: newId, extra: { ...(workflow.extra ?? {}), run_telemetry_copy: origin } };
}

/** The tab name of a copy: "<workflow> - <what changed>", without characters a file name cannot have. */
export function copyName(base: string, what: string): string {
  const clean = (s: string) => s.replace(/[\\/:*?"<>|\u0000-\u001f]+/g, " ").replace(/\s+/g, " ").trim();
  return `${clean(base) || "workflow"} - ${clean(what)}`.slice(0, 120).trim();
}
