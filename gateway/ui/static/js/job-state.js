// A job as the page knows it: the definition's nodes, the job's stored record and its events applied
// in order. Events drive the live states; a fresh read of the job (`merge`) fills in details (outputs,
// errors, rendered configs) and never moves a state back, since events may be newer than the read. A
// waiting node keeps its `wait` ({node_id, kind, signal, message, since, deadline}) from its
// `node_waiting` event and from each read of the job, whichever is later. A workflow node's child jobs
// come from its `child_job_started` events and the read's `child_job_ids`; a child's status from its
// `child_job_finished` event, or until then from a read of the child.

const TERMINAL_NODE = new Set(["completed", "failed", "skipped", "cancelled"]);
const TERMINAL_JOB = new Set(["completed", "failed", "cancelled"]);
const JOB_ENDINGS = { job_completed: "completed", job_failed: "failed", job_cancelled: "cancelled" };
const CHILD_SIGNAL_PREFIX = "child:";

export const EVENT_TYPES = [
  "job_started",
  "node_started",
  "node_completed",
  "node_failed",
  "node_skipped",
  "node_retrying",
  "node_progress",
  "node_waiting",
  "signal_received",
  "child_job_started",
  "child_job_finished",
  "llm_token",
  "agent_step",
  "tool_call_started",
  "tool_call_finished",
  ...Object.keys(JOB_ENDINGS),
];

export function isTerminalJob(status) {
  return TERMINAL_JOB.has(status);
}

export function endsJob(type) {
  return type in JOB_ENDINGS;
}

/** The child job a `child` wait waits for: its signal is `child:<child job id>`. */
export function childJobOf(wait) {
  return wait.signal.slice(CHILD_SIGNAL_PREFIX.length);
}

function stage(status, terminal) {
  if (terminal.has(status)) return 2;
  return status === "pending" ? 0 : 1;
}

/** A record read from the API laid over what the events said, unless the events are further along; in
 * flight, the events' state (running or retrying) is the fresher one. */
function newest(known, read, terminal) {
  const knownStage = stage(known.status, terminal);
  const readStage = stage(read.status, terminal);
  if (readStage < knownStage) return { ...read, ...known };
  const merged = { ...known, ...read };
  if (readStage === knownStage && readStage === 1) merged.status = known.status;
  return merged;
}

/** The later of two waits: a read may still hold the wait a retried node's events have gone past. */
function laterWait(known, read) {
  if (!known || !read) return read ?? known;
  return Date.parse(read.since) >= Date.parse(known.since) ? read : known;
}

export class JobModel {
  constructor(job, definition) {
    this.job = { status: "pending" };
    this.nodes = new Map();
    for (const spec of definition.nodes) {
      this.nodes.set(spec.id, { node_id: spec.id, node_type: spec.type, status: "pending", attempts: 0 });
    }
    this.progress = new Map();
    this.tokens = new Map();
    this.children = new Map();
    this.events = [];
    this.lastSequence = 0;
    this.repeated = 0;
    this.tokenIds = new Set();
    this.merge(job);
  }

  /** Details from a read of the job: states only move forward. */
  merge(job) {
    this.job = { ...newest(this.job, { ...job, nodes: undefined }, TERMINAL_JOB), nodes: undefined };
    for (const [id, stored] of Object.entries(job.nodes ?? {})) {
      const current = this.nodes.get(id) ?? { node_id: id, node_type: stored.node_type, status: "pending" };
      const merged = newest(current, stored, TERMINAL_NODE);
      merged.rendered_config = stored.rendered_config ?? current.rendered_config;
      merged.wait = laterWait(current.wait, stored.wait);
      this.nodes.set(id, merged);
      for (const childId of stored.child_job_ids ?? []) this.addChild(id, childId);
    }
  }

  /** Apply one event; false when it was seen before (counted in `repeated`: a resumed stream that works
   * repeats none). */
  apply(event) {
    if (event.type === "llm_token") {
      if (this.tokenIds.has(event.id)) return false;
      this.tokenIds.add(event.id);
      this.addToken(event);
      return true;
    }
    if (event.sequence <= this.lastSequence) {
      this.repeated += 1;
      return false;
    }
    this.lastSequence = event.sequence;
    this.events.push(event);
    const node = event.node_id ? this.nodes.get(event.node_id) : null;
    const data = event.data ?? {};
    switch (event.type) {
      case "job_started":
        this.job.status = "running";
        this.job.started_at ??= event.time;
        break;
      case "node_started":
        Object.assign(node, { status: "running", attempts: data.attempt ?? node.attempts, finished_at: null });
        node.started_at ??= event.time;
        break;
      case "node_completed":
        Object.assign(node, { status: "completed", output: data.output, finished_at: event.time, error: null });
        break;
      case "node_failed":
        Object.assign(node, { status: "failed", error: data.error, finished_at: event.time });
        break;
      case "node_retrying":
        Object.assign(node, { status: "retrying", error: data.error });
        break;
      case "node_waiting":
        Object.assign(node, { status: "waiting", wait: { node_id: event.node_id, ...data } });
        break;
      case "node_skipped":
        Object.assign(node, { status: "skipped", started_at: node.started_at ?? event.time, finished_at: event.time });
        break;
      case "node_progress":
        this.progress.set(event.node_id, data);
        break;
      case "child_job_started":
        this.childStarted(event.node_id, data.child_job_id);
        break;
      case "child_job_finished":
        this.addChild(event.node_id, data.child_job_id).status = data.status;
        break;
      default:
        if (endsJob(event.type)) this.end(JOB_ENDINGS[event.type], event);
    }
    return true;
  }

  addToken(event) {
    const attempt = event.data?.attempt ?? 1;
    const current = this.tokens.get(event.node_id);
    const stream = current && current.attempt === attempt ? current : { attempt, pieces: [] };
    stream.pieces[event.data?.index ?? stream.pieces.length] = event.data?.text ?? "";
    this.tokens.set(event.node_id, stream);
  }

  /** A map node's item counts: from its progress events, else (a job read after it ended) its output. */
  progressOf(nodeId) {
    const live = this.progress.get(nodeId);
    if (live) return live;
    const node = this.nodes.get(nodeId);
    const output = node?.node_type === "map" ? node.output : null;
    if (!output || typeof output.total !== "number") return undefined;
    return { succeeded: output.succeeded ?? 0, failed: output.failed ?? 0, total: output.total };
  }

  /** What the job waits for now, the longest waiting first (as `GET /jobs/{id}/waits` lists it). */
  waits() {
    return [...this.nodes.values()]
      .filter((node) => node.status === "waiting" && node.wait)
      .map((node) => node.wait)
      .sort((a, b) => Date.parse(a.since) - Date.parse(b.since) || a.node_id.localeCompare(b.node_id));
  }

  addChild(nodeId, childId) {
    let known = this.children.get(nodeId);
    if (!known) this.children.set(nodeId, (known = new Map()));
    if (!known.has(childId)) known.set(childId, { id: childId, status: undefined });
    return known.get(childId);
  }

  /** Children in the order they started, which the events tell (a read names only the latest child). */
  childStarted(nodeId, childId) {
    const child = this.addChild(nodeId, childId);
    const known = this.children.get(nodeId);
    known.delete(childId);
    known.set(childId, child);
  }

  /** A read of one of `nodeId`'s child jobs: its status, unless the events already said how it ended. */
  mergeChild(nodeId, child) {
    const known = this.addChild(nodeId, child.id);
    if (!isTerminalJob(known.status)) known.status = child.status;
  }

  /** The child jobs a workflow node started, as {id, status}, the status undefined until a read of the
   * child or its `child_job_finished` event tells it. */
  childrenOf(nodeId) {
    return [...(this.children.get(nodeId)?.values() ?? [])];
  }

  tokenText(nodeId) {
    return (this.tokens.get(nodeId)?.pieces ?? []).join("");
  }

  /** As the scheduler does: a job that fails or is cancelled stops every node still in flight. */
  end(status, event) {
    this.job.status = status;
    this.job.finished_at ??= event.time;
    if (event.data?.error) this.job.error = event.data.error;
    if (status === "completed") return;
    for (const node of this.nodes.values()) {
      if (!TERMINAL_NODE.has(node.status)) Object.assign(node, { status: "cancelled", finished_at: event.time });
    }
  }

  get finished() {
    return isTerminalJob(this.job.status);
  }

  /** Seconds from the job's start to its end, or to now while it runs. */
  duration(now = Date.now()) {
    if (!this.job.started_at) return null;
    const end = this.job.finished_at ? Date.parse(this.job.finished_at) : now;
    return Math.max(0, (end - Date.parse(this.job.started_at)) / 1000);
  }
}
