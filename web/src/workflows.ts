/**
 * Reporting workflow names to the backend (POST /telemetry/workflows {id, name}).
 *
 * ComfyUI sends the UI workflow's `id` with each prompt but no name (comfyui-integration.md §8); the open
 * workflow's file path is only known to the frontend. The panel reports `id → name` when a prompt is queued and when
 * the active workflow changes. `WorkflowNameReporter` skips pairs it already sent, so a hundred queued prompts of one
 * workflow cost one request.
 */

/** "workflows/portraits/upscale v2.json" → "upscale v2"; a name without folder or extension is kept as it is. */
export function workflowNameFromPath(path: string | null | undefined): string | null {
  if (!path) return null;
  const file = path.split(/[\\/]/).pop() ?? "";
  const name = file.replace(/\.json$/i, "").trim();
  return name || null;
}

export interface WorkflowRef {
  id: string;
  name: string;
}

/** The minimal view of the frontend's objects this module reads (all optional: versions differ). */
export interface WorkflowSource {
  graph?: { id?: unknown; serialize?: () => { id?: unknown } } | null;
  activeWorkflow?: {
    path?: string | null;
    filename?: string | null;
    activeState?: { id?: unknown } | null;
    initialState?: { id?: unknown } | null;
  } | null;
}

/** The id and name of the open workflow, or null when either is unknown (an unsaved, unnamed graph still has a
 * path such as "workflows/Unsaved Workflow.json", which is what the user sees in the tab, so it is reported). */
export function currentWorkflow(source: WorkflowSource): WorkflowRef | null {
  const wf = source.activeWorkflow ?? null;
  const name = workflowNameFromPath(wf?.path ?? null) ?? workflowNameFromPath(wf?.filename ?? null);
  const id = workflowIdOf(source);
  if (!id || !name) return null;
  return { id, name };
}

/** The UI workflow id that ComfyUI sends with prompts (`extra_pnginfo.workflow.id`): the active workflow's state,
 * else the graph's own id, else its serialisation. */
export function workflowIdOf(source: WorkflowSource): string | null {
  const wf = source.activeWorkflow ?? null;
  let id: unknown = wf?.activeState?.id ?? source.graph?.id ?? wf?.initialState?.id;
  if (typeof id !== "string" || !id) {
    try {
      id = source.graph?.serialize?.().id;
    } catch {
      id = undefined;
    }
  }
  return typeof id === "string" && id ? id : null;
}

export class WorkflowNameReporter {
  private readonly sent = new Map<string, string>();
  private readonly maxRemembered: number;
  // Posts go out one after another: two in flight at once (the name at load, then at queue time) could be applied
  // by the backend in either order and leave the older name on the runs.
  private previous: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly post: (ref: WorkflowRef) => Promise<boolean>,
    maxRemembered = 500,
  ) {
    this.maxRemembered = maxRemembered;
  }

  /** The name last reported for a workflow id (the panel shows it on live runs that arrive before the backend
   * has applied it). */
  nameFor(id: string | null | undefined): string | null {
    return id ? (this.sent.get(id) ?? null) : null;
  }

  /** Sends the pair unless this exact pair was sent before. A failed send is retried next time. */
  async report(ref: WorkflowRef | null): Promise<boolean> {
    if (!ref) return false;
    if (this.sent.get(ref.id) === ref.name) return false;
    this.sent.set(ref.id, ref.name);
    if (this.sent.size > this.maxRemembered) {
      const oldest = this.sent.keys().next().value;
      if (oldest !== undefined) this.sent.delete(oldest);
    }
    const sending = this.previous.then(() => this.post(ref));
    this.previous = sending.catch(() => false); // never rejects: the next send always follows
    let ok = false;
    try {
      ok = await sending;
    } catch {
      ok = false;
    }
    if (!ok && this.sent.get(ref.id) === ref.name) this.sent.delete(ref.id);
    return ok;
  }
}
