// The wfkit flow builder: an anywidget front end that edits a flow spec (plain data) and sends it
// to the kernel after every edit. The kernel answers with its validation problems (the same
// checks and messages as code), shown on the steps and edges they concern. Save asks the kernel to
// write the spec file and update the Workflow. Nothing here decides whether a flow is valid.
import dagre from "@dagrejs/dagre";

const NODE_W = 150;
const NODE_H = 44;
const END = "__end__";
const SVG_NS = "http://www.w3.org/2000/svg";
const HISTORY_LIMIT = 200;
// The canvas keeps at least this width beside the side panel; a narrower builder (a notebook next
// to JupyterLab's file browser) puts the panel under the canvas instead. PANEL_W is the panel's
// width beside the canvas, as builder.css sets it.
const MIN_CANVAS_W = 600;
const PANEL_W = 340;

const clone = (value) => JSON.parse(JSON.stringify(value));
// A number as a person writes one, JSON-like: 3, -2, 1.5, .5, 1e3 (not "1,5", "2m", "0x10", "Infinity").
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) if (child) node.append(child);
  return node;
}

function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) if (child) node.append(child);
  return node;
}

// ---- reading the spec ------------------------------------------------------------------------

export function conditionText(cond) {
  if (!cond || typeof cond !== "object") return "?";
  if ("not" in cond) return `not ${conditionText(cond.not)}`;
  if ("all" in cond) return `(${cond.all.map(conditionText).join(" and ")})`;
  if ("any" in cond) return `(${cond.any.map(conditionText).join(" or ")})`;
  // exists false tests that the field is missing: said so, as the kernel prints it.
  if (cond.op === "exists") return `${cond.field || "?"} ${cond.value === false || cond.value === 0 ? "missing" : "exists"}`;
  const value = cond.value === undefined || cond.value === null ? "" : ` ${JSON.stringify(cond.value)}`;
  return `${cond.field || "?"} ${cond.op}${value}`;
}

export function edgeList(spec) {
  const out = [];
  for (const [src, targets] of Object.entries(spec.edges || {})) {
    (targets || []).forEach((dst, index) => out.push({ id: `edge:${src}:${index}`, kind: "edge", src, dst, index }));
  }
  for (const [src, router] of Object.entries(spec.routes || {})) {
    (router.routes || []).forEach((route, index) =>
      out.push({ id: `route:${src}:${index}`, kind: "route", src, dst: route.go, index, route }),
    );
    if (router.default) out.push({ id: `default:${src}`, kind: "default", src, dst: router.default.go, route: router.default });
  }
  for (const [name, step] of Object.entries(spec.steps || {})) {
    if (step.fallback) out.push({ id: `fallback:${name}`, kind: "fallback", src: name, dst: step.fallback });
    if (step.approval && step.approval.on_reject) {
      out.push({ id: `reject:${name}`, kind: "reject", src: name, dst: step.approval.on_reject });
    }
  }
  return out;
}

// Where a label may sit on its edge: points along the curve, by share of its length, the middle
// first. A label always sits on its own edge, so it never reads as the condition of another one.
const LABEL_SHARES = [0.5, 0.42, 0.58, 0.34, 0.66, 0.26, 0.74, 0.18, 0.82];

function bezierAt([p0, p1, p2, p3], t) {
  const u = 1 - t;
  const at = (i) => u * u * u * p0[i] + 3 * u * u * t * p1[i] + 3 * u * t * t * p2[i] + t * t * t * p3[i];
  return [at(0), at(1)];
}

function labelSpots(curve) {
  const points = [];
  for (let i = 0; i <= 64; i++) points.push(bezierAt(curve, i / 64));
  const lengths = [0];
  for (let i = 1; i < points.length; i++) lengths.push(lengths[i - 1] + Math.hypot(points[i][0] - points[i - 1][0], points[i][1] - points[i - 1][1]));
  const total = lengths[lengths.length - 1];
  return LABEL_SHARES.map((share) => {
    const want = share * total;
    let i = 1;
    while (i < lengths.length - 1 && lengths[i] < want) i++;
    const span = lengths[i] - lengths[i - 1] || 1;
    const f = Math.min(1, Math.max(0, (want - lengths[i - 1]) / span));
    return [points[i - 1][0] + f * (points[i][0] - points[i - 1][0]), points[i - 1][1] + f * (points[i][1] - points[i - 1][1])];
  });
}

// Place every edge's label on its own curve: at the first spot (middle first) that covers no step
// and no label placed before; if there is none, at the spot covering least (a step counts far more
// than a label), the middle when they tie. Labels with fewest free spots go first, so a short edge
// between two close steps keeps its only free spot. Returns the label elements.
function placeLabels(tags, steps) {
  const area = (a, b) => {
    const ox = (a.w + b.w) / 2 + 2 - Math.abs(a.x - b.x);
    const oy = (a.h + b.h) / 2 + 2 - Math.abs(a.y - b.y);
    return ox > 0 && oy > 0 ? ox * oy : 0;
  };
  const fits = (tag, [x, y]) => x - tag.width / 2 >= 0 && y - tag.height / 2 >= 0;
  const free = (tag) => tag.spots.filter((p) => fits(tag, p) && steps.every((box) => !area(box, { x: p[0], y: p[1], w: tag.width, h: tag.height }))).length;
  const order = tags.map((tag, i) => ({ tag, i, free: free(tag) })).sort((a, b) => a.free - b.free || a.i - b.i);
  const placed = [];
  const out = new Array(tags.length);
  for (const { tag, i } of order) {
    let best = null;
    for (const [x, y] of tag.spots) {
      const box = { x, y, w: tag.width, h: tag.height };
      const cost = steps.reduce((sum, other) => sum + 100 * area(other, box), 0) + placed.reduce((sum, other) => sum + area(other, box), 0) + (fits(tag, [x, y]) ? 0 : 1e9);
      if (!best || cost < best.cost) best = { box, cost };
      if (cost === 0) break;
    }
    placed.push(best.box);
    out[i] = tag.build(best.box.x, best.box.y);
  }
  return out;
}

// An edge's label as lines: the condition (or kind), then the tools the route binds.
function edgeLabel(edge) {
  if (edge.kind === "edge") return [];
  if (edge.kind === "fallback") return ["on failure"];
  if (edge.kind === "reject") return ["on reject"];
  const lines = [edge.kind === "default" ? "default" : conditionText(edge.route.when)];
  if (edge.route && Array.isArray(edge.route.tools)) lines.push(`tools: ${edge.route.tools.join(", ") || "none"}`);
  return lines;
}

// A label's lines as drawn: a line longer than LABEL_CHARS wrapped after a space or a comma (a
// word longer than that split where it must), never cut, so the whole condition is read on the
// graph; the label's title holds it on one line for hovering.
const LABEL_CHARS = 34;
// How long Save waits for the kernel's answer (a save takes well under a second) before saying none came.
const SAVE_WAIT_MS = 5000;
const NO_ANSWER =
  "not saved: the kernel does not answer (it may have stopped: the notebook's top right says). " +
  "Start it (Kernel menu), then run this builder's cell again: edits not saved here are lost, so note them first";

function wrapLine(line) {
  const out = [];
  let current = "";
  for (let word of line.split(/(?<=[ ,])/)) {
    if (current && (current + word).trimEnd().length > LABEL_CHARS) {
      out.push(current.trimEnd());
      current = "";
    }
    while (word.trimEnd().length > LABEL_CHARS) {
      out.push(word.slice(0, LABEL_CHARS));
      word = word.slice(LABEL_CHARS);
    }
    current += word;
  }
  if (current || !out.length) out.push(current.trimEnd());
  return out;
}

function labelLines(lines) {
  return lines.flatMap(wrapLine);
}

// A label's width and height in px ([0, 0] for none).

function labelSize(lines) {
  const shown = labelLines(lines);
  if (!shown.length) return [0, 0];
  return [6.2 * Math.max(...shown.map((line) => line.length)) + 10, 14 * shown.length + 4];
}

// Where a kernel problem points: a step, an edge, or the flow as a whole.
// A step box's line of marks (approval, irreversible, visits, retry, timeout), as many as fit in
// the box, then "+N" for the rest (the line ran past both sides of the box; the box's title and
// its label for screen readers name them all). MARK_CHARS: characters of 10 px text the box holds.
const MARK_CHARS = 28;
export function markLine(marks) {
  const all = marks.join(" · ");
  if (all.length <= MARK_CHARS) return all;
  for (let shown = marks.length - 1; shown > 0; shown--) {
    const line = `${marks.slice(0, shown).join(" · ")} +${marks.length - shown}`;
    if (line.length <= MARK_CHARS) return line;
  }
  const first = marks[0];
  const rest = marks.length > 1 ? ` +${marks.length - 1}` : "";
  return `${first.slice(0, MARK_CHARS - rest.length - 1)}…${rest}`;
}

export function problemTarget(path) {
  const [part, name, key, index] = path;
  if (part === "steps" && name !== undefined) {
    if (key === "fallback") return { edge: `fallback:${name}`, step: name };
    if (key === "approval" && index === "on_reject") return { edge: `reject:${name}`, step: name };
    return { step: name };
  }
  if (part === "edges" && name !== undefined) return typeof key === "number" ? { edge: `edge:${name}:${key}` } : { step: name };
  if (part === "routes" && name !== undefined) {
    if (key === "routes" && typeof index === "number") return { edge: `route:${name}:${index}` };
    if (key === "default") return { edge: `default:${name}` };
    return { step: name };
  }
  return {};
}

// The kernel's problems with the part of the spec at `path` itself (a condition's value), so the
// form marks the box that holds it, not only the route.
export function problemsAt(problems, path) {
  const key = JSON.stringify(path);
  return (problems || []).filter((problem) => JSON.stringify(problem.path) === key).map((problem) => problem.message);
}

// Whether a kernel problem is about a route's or a gate's condition value, or a gate's reason,
// which the form shows under that box (problemsAt).
function atValueBox(path) {
  if (path.length === 4 && path[0] === "steps" && path[2] === "approval" && path[3] === "reason") return true;
  const when = path[0] === "routes" && path[2] === "routes" ? 4 : path[0] === "steps" && path[2] === "approval" ? 3 : -1;
  return when > 0 && path[when] === "when" && path.length > when + 1 && path[path.length - 1] === "value";
}

// The kernel's problems a form lists at its top: all but those shown under their value box, so
// each is read once, where the user must act.
export function formProblems(problems) {
  return (problems || []).filter((problem) => !atValueBox(problem.path));
}

// One value as typed in a value box: JSON (3, true, "quoted text"), else the text itself, spaces
// around it dropped as in the field box (quoted, they are kept).
function parseOne(text) {
  const trimmed = text.trim();
  try {
    return JSON.parse(trimmed);
  } catch (_) {
    return trimmed;
  }
}

// One value as its box shows it, so that parseOne reads back the same value: text that would read
// as something else (10001, true, text with spaces around it) is shown quoted, so editing a digit
// of a zip code keeps it text.
function oneText(value) {
  return typeof value === "string" && (value === "" || parseOne(value) === value) ? value : JSON.stringify(value);
}

// An `in` list typed as "a, b, 3": each part read as one value is (3 a number, as 3 typed alone).
function parseValue(text, op) {
  const trimmed = text.trim();
  if (op === "exists" && trimmed === "") return null;
  if (op === "in") {
    try {
      const parsed = JSON.parse(trimmed);
      if (Array.isArray(parsed)) return parsed;
    } catch (_) {
      /* a comma-separated list */
    }
    return trimmed === "" ? [] : trimmed.split(",").map(parseOne);
  }
  return parseOne(trimmed);
}

function valueText(value, op) {
  if (value === undefined || value === null) return "";
  const plain = (v) => v === null || typeof v !== "object";
  if (op === "in" && Array.isArray(value) && value.every((v) => plain(v) && !(typeof v === "string" && v.includes(",")))) {
    return value.map(oneText).join(", ");
  }
  return oneText(value);
}

// Call `fn(value)` when a text or number input's value is committed: on change (blur) or Enter.
function onCommit(input, fn) {
  let last = input.value;
  const commit = () => {
    if (input.value === last) return;
    last = input.value;
    input.dataset.committed = last; // what renderPanel keeps apart from text typed since
    fn(input.value);
  };
  input.addEventListener("change", commit);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      commit();
    }
  });
}

function getAt(root, path) {
  return path.reduce((node, key) => node[key], root);
}

function setAt(root, path, value) {
  if (path.length === 0) return value;
  getAt(root, path.slice(0, -1))[path[path.length - 1]] = value;
  return root;
}

// ---- the editor --------------------------------------------------------------------------------

let counter = 0;

class Editor {
  constructor(model, el) {
    this.model = model;
    this.el = el;
    this.uid = `wfk${++counter}`;
    this.spec = clone(model.get("spec") || {});
    this.selected = null; // {step: name} | {edge: id}
    this.undoStack = [];
    this.redoStack = [];
    this.drag = null;
    this.hidden = { palette: false, panel: false }; // side columns the user folded away
    this.kept = {}; // settings a switch took out of the spec (a gate unticked, a route made plain), to give back
    this.build();
    if (this.placeMissing(true)) this.sync();
    // The spec the kernel's status line speaks of: as opened, then as sent with the last Save the
    // kernel answered. Any other spec has edits that Save has not written, and the line says so.
    this.statusFor = JSON.stringify(this.spec);
    this.renderAll();
    this.listeners = [
      ["change:problems", () => { this.unanswered = false; this.renderGraph(); this.renderProblems(); this.renderPanel(); }],
      ["change:status", () => this.renderStatus()],
      ["change:palette", () => this.renderPalette()],
      ["change:tools", () => this.renderPanel()],
      ["msg:custom", (msg) => this.onMessage(msg)],
    ];
    for (const [name, fn] of this.listeners) model.on(name, fn);
  }

  destroy() {
    clearTimeout(this.saveTimer);
    for (const [name, fn] of this.listeners) this.model.off(name, fn);
    if (this.resizer) this.resizer.disconnect();
  }

  // ---- state and history ----

  get layout() {
    this.spec.metadata = this.spec.metadata || {};
    this.spec.metadata.layout = this.spec.metadata.layout || {};
    return this.spec.metadata.layout;
  }

  change(mutate) {
    this.undoStack.push(JSON.stringify(this.spec));
    if (this.undoStack.length > HISTORY_LIMIT) this.undoStack.shift();
    this.redoStack = [];
    mutate(this.spec);
    this.tidy();
    this.sync();
    this.renderAll();
  }

  tidy() {
    const spec = this.spec;
    if (spec.edges) {
      for (const [src, targets] of Object.entries(spec.edges)) if (!targets || targets.length === 0) delete spec.edges[src];
      if (Object.keys(spec.edges).length === 0) delete spec.edges;
    }
    if (spec.routes) {
      for (const [src, router] of Object.entries(spec.routes)) {
        if (router.routes && router.routes.length === 0) delete router.routes;
        if (!router.routes && !router.default) delete spec.routes[src];
      }
      if (Object.keys(spec.routes).length === 0) delete spec.routes;
    }
  }

  undo() {
    if (!this.undoStack.length) return this.setStatus("nothing to undo");
    this.redoStack.push(JSON.stringify(this.spec));
    this.spec = JSON.parse(this.undoStack.pop());
    this.afterHistory();
  }

  redo() {
    if (!this.redoStack.length) return this.setStatus("nothing to redo");
    this.undoStack.push(JSON.stringify(this.spec));
    this.spec = JSON.parse(this.redoStack.pop());
    this.afterHistory();
  }

  afterHistory() {
    if (this.selected && this.selected.step && !(this.selected.step in (this.spec.steps || {}))) this.selected = null;
    if (this.selected && this.selected.edge && !edgeList(this.spec).some((e) => e.id === this.selected.edge)) this.selected = null;
    this.sync();
    this.renderAll();
  }

  sync() {
    this.model.set("spec", clone(this.spec));
    this.model.save_changes();
  }

  setStatus(text) {
    this.localStatus = text;
    this.renderStatus();
  }

  onMessage(msg) {
    if (msg && msg.type === "save_answered") {
      clearTimeout(this.saveTimer);
      this.unanswered = false;
      this.renderProblems(); // an answer after all (a busy kernel): its list again
      this.statusFor = this.saving;
      this.renderStatus();
    } else if (msg && msg.type === "step_created") {
      this.addStep(msg.name, msg.ref); // first: its redraw of the status line would wipe the message
      this.setStatus(`wrote ${msg.name}() into ${msg.file}`);
    } else if (msg && msg.type === "error") {
      this.setStatus(msg.message);
    }
  }

  // ---- edits ----

  freeSlot() {
    const taken = Object.values(this.layout);
    for (let i = 0; ; i++) {
      const x = 30 + (i % 4) * (NODE_W + 40);
      const y = 30 + Math.floor(i / 4) * (NODE_H + 70);
      if (!taken.some(([tx, ty]) => Math.abs(tx - x) < NODE_W && Math.abs(ty - y) < NODE_H + 20)) return [x, y];
    }
  }

  addStep(fnName, ref) {
    const steps = this.spec.steps || {};
    let name = fnName;
    for (let i = 2; name in steps; i++) name = `${fnName}_${i}`;
    this.change((spec) => {
      spec.steps = spec.steps || {};
      spec.steps[name] = { fn: ref };
      if (!spec.entry) spec.entry = name;
      this.layout[name] = this.freeSlot();
    });
    this.select({ step: name });
    return name;
  }

  connect(src, dst) {
    this.change((spec) => {
      const router = spec.routes && spec.routes[src];
      if (router) {
        router.routes = router.routes || [];
        router.routes.push({ when: { field: "", op: "eq", value: "" }, go: dst });
      } else {
        spec.edges = spec.edges || {};
        spec.edges[src] = spec.edges[src] || [];
        spec.edges[src].push(dst);
      }
    });
    const made = edgeList(this.spec).filter((e) => e.src === src && e.dst === dst && (e.kind === "edge" || e.kind === "route"));
    this.select({ edge: made[made.length - 1].id });
  }

  findEdge(id) {
    return edgeList(this.spec).find((e) => e.id === id);
  }

  // Take an edge out of the spec; returns what it carried (target and tools).
  detach(spec, edge) {
    if (edge.kind === "edge") spec.edges[edge.src].splice(edge.index, 1);
    else if (edge.kind === "route") spec.routes[edge.src].routes.splice(edge.index, 1);
    else if (edge.kind === "default") delete spec.routes[edge.src].default;
    else if (edge.kind === "fallback") delete spec.steps[edge.src].fallback;
    else if (edge.kind === "reject") delete spec.steps[edge.src].approval.on_reject;
  }

  setEdgeKind(edge, kind) {
    if (kind === edge.kind) return;
    let newId;
    // What a route tested, and the tools it bound, are kept aside while it is a plain connection:
    // made a route again, it tests that again (it came back blank, the condition retyped from memory).
    const keep = `route:${edge.src}:${edge.dst}`;
    if (edge.route) this.kept[keep] = { ...(this.kept[keep] || {}), ...clone(edge.route) }; // a default has no when: an earlier one stays
    const kept = this.kept[keep] || {};
    this.change((spec) => {
      const tools = edge.route ? edge.route.tools : kept.tools;
      this.detach(spec, edge);
      if (kind === "edge") {
        spec.edges = spec.edges || {};
        spec.edges[edge.src] = spec.edges[edge.src] || [];
        spec.edges[edge.src].push(edge.dst);
        newId = `edge:${edge.src}:${spec.edges[edge.src].length - 1}`;
      } else {
        spec.routes = spec.routes || {};
        const router = (spec.routes[edge.src] = spec.routes[edge.src] || {});
        const go = { go: edge.dst, ...(tools ? { tools } : {}) };
        if (kind === "default") {
          router.default = go;
          newId = `default:${edge.src}`;
        } else {
          router.routes = router.routes || [];
          const when = edge.kind === "route" ? edge.route.when : kept.when || { field: "", op: "eq", value: "" };
          router.routes.push({ when, ...go });
          newId = `route:${edge.src}:${router.routes.length - 1}`;
        }
      }
    });
    this.tidy();
    this.select({ edge: newId });
  }

  updateRoute(edge, update) {
    this.change((spec) => {
      const target =
        edge.kind === "route" ? spec.routes[edge.src].routes[edge.index] : edge.kind === "default" ? spec.routes[edge.src].default : null;
      if (target) update(target);
    });
  }

  retarget(edge, dst) {
    this.change((spec) => {
      if (edge.kind === "edge") spec.edges[edge.src][edge.index] = dst;
      else if (edge.kind === "route") spec.routes[edge.src].routes[edge.index].go = dst;
      else if (edge.kind === "default") spec.routes[edge.src].default.go = dst;
      else if (edge.kind === "fallback") spec.steps[edge.src].fallback = dst;
      else if (edge.kind === "reject") spec.steps[edge.src].approval.on_reject = dst;
    });
  }

  moveRoute(edge, by) {
    const routes = this.spec.routes[edge.src].routes;
    const to = edge.index + by;
    if (to < 0 || to >= routes.length) return;
    this.change((spec) => {
      const list = spec.routes[edge.src].routes;
      [list[edge.index], list[to]] = [list[to], list[edge.index]];
    });
    this.select({ edge: `route:${edge.src}:${to}` });
  }

  deleteEdge(edge) {
    this.change((spec) => this.detach(spec, edge));
    this.select(null);
  }

  deleteStep(name) {
    this.change((spec) => {
      delete spec.steps[name];
      // Its place is kept aside: what still points to it is drawn to a ghost there (the ghost was put
      // under the step the first route came from, where it sat on other arrows and took them over).
      this.kept[`place:${name}`] = this.layout[name];
      delete this.layout[name];
      if (spec.edges) delete spec.edges[name];
      if (spec.routes) delete spec.routes[name];
      // What pointed here stays: the kernel reports it on the graph, and Undo brings the step back.
    });
    this.select(null);
  }

  updateStep(name, update) {
    this.change((spec) => update(spec.steps[name], spec));
  }

  // Rename a step everywhere the spec names it: its key (in place, so the file's order and diff
  // stay), the entry, connections and routes in and out, fallbacks and rejection routes of other
  // steps, and its place on the canvas. Its settings and the routes' conditions move with it.
  // A name that cannot be a step's is refused under the Name box, which keeps what was typed.
  renameStep(from, typed) {
    const to = typed.trim();
    const steps = this.spec.steps || {};
    let why = null;
    if (!to) why = "a step needs a name: type one";
    else if (to === END) why = `${END} marks the end of a branch: choose another name`;
    else if (to !== from && to in steps) why = `a step named '${to}' exists already: choose another name`;
    this.renameRefused = why ? { step: from, typed, message: why } : null;
    if (why || to === from) return this.renderPanel();
    const rename = (n) => (n === from ? to : n);
    const renameKeys = (object, value = (v) => v) => Object.fromEntries(Object.entries(object).map(([k, v]) => [rename(k), value(v)]));
    this.change((spec) => {
      const step = spec.steps[from];
      if (!step.fn && !step.workflow) step.fn = from; // a step without fn runs the function of its own name
      spec.steps = renameKeys(spec.steps);
      if (spec.entry === from) spec.entry = to;
      if (spec.edges) spec.edges = renameKeys(spec.edges, (targets) => targets.map(rename));
      if (spec.routes) {
        spec.routes = renameKeys(spec.routes, (router) => {
          for (const route of router.routes || []) route.go = rename(route.go);
          if (router.default) router.default.go = rename(router.default.go);
          return router;
        });
      }
      for (const other of Object.values(spec.steps)) {
        if (other.fallback) other.fallback = rename(other.fallback);
        if (other.approval && other.approval.on_reject) other.approval.on_reject = rename(other.approval.on_reject);
      }
      const layout = renameKeys(this.layout); // this.layout makes spec.metadata if there is none
      spec.metadata.layout = layout;
    });
    this.select({ step: to });
  }

  autoLayout(all) {
    const g = new dagre.graphlib.Graph({ multigraph: true });
    g.setGraph({ rankdir: "TB", nodesep: 40, ranksep: 70, marginx: 30, marginy: 30 });
    g.setDefaultEdgeLabel(() => ({}));
    const steps = Object.keys(this.spec.steps || {});
    for (const name of steps) g.setNode(name, { width: NODE_W, height: NODE_H });
    // Each label's size, so dagre spaces the rows and the boxes to leave room for the labels. The
    // edges out of one step fan out from one point, and a label sits on its own edge, so the labels
    // of one step's edges stack in the rows under it: each edge tells dagre their total height.
    const edges = edgeList(this.spec).filter((edge) => steps.includes(edge.src) && steps.includes(edge.dst));
    const stacked = {};
    for (const edge of edges) stacked[edge.src] = (stacked[edge.src] || 0) + labelSize(edgeLabel(edge))[1];
    for (const edge of edges) {
      const [width] = labelSize(edgeLabel(edge));
      g.setEdge(edge.src, edge.dst, { width, height: stacked[edge.src], labelpos: "c" }, edge.id);
    }
    dagre.layout(g);
    const layout = this.layout;
    for (const name of steps) {
      if (all || !layout[name]) {
        const node = g.node(name);
        layout[name] = [Math.round(node.x - NODE_W / 2), Math.round(node.y - NODE_H / 2)];
      }
    }
  }

  // Give positions to steps that have none; true if any was placed.
  placeMissing(initial) {
    const steps = Object.keys(this.spec.steps || {});
    const missing = steps.filter((name) => !(this.spec.metadata && this.spec.metadata.layout && this.spec.metadata.layout[name]));
    if (!missing.length) return false;
    if (initial && missing.length === steps.length) this.autoLayout(true);
    else for (const name of missing) this.layout[name] = this.freeSlot();
    return true;
  }

  select(selection) {
    this.selected = selection;
    this.renameRefused = null;
    this.renderGraph();
    this.renderPanel();
  }

  // ---- the page ----

  build() {
    this.el.innerHTML = "";
    this.root = h("div", { class: "wfk-builder", "data-lm-suppress-shortcuts": "true" });
    this.root.addEventListener("keydown", (event) => this.onKey(event));
    this.toolbar = h("div", { class: "wfk-toolbar", role: "toolbar", "aria-label": "Flow builder" });
    this.palette = h("aside", { id: `${this.uid}-palette`, class: "wfk-palette", "aria-label": "Step functions" });
    this.canvasBox = h("div", { class: "wfk-canvas" });
    this.svg = s("svg", { role: "group", "aria-label": "Flow graph", class: "wfk-svg" });
    this.canvasBox.append(this.svg);
    this.panel = h("aside", { id: `${this.uid}-panel`, class: "wfk-panel", "aria-label": "Selected step or route" });
    this.problemsBox = h("div", { class: "wfk-problems", role: "status", "aria-live": "polite", "aria-label": "Problems" });
    this.root.append(this.toolbar, h("div", { class: "wfk-main" }, this.palette, this.canvasBox, this.panel), this.problemsBox);
    this.el.append(this.root);
    this.svg.addEventListener("pointermove", (event) => this.onPointerMove(event));
    this.svg.addEventListener("pointerup", (event) => this.onPointerUp(event));
    this.svg.addEventListener("pointerdown", (event) => {
      if (event.target === this.svg) this.select(null);
    });
    this.renderToolbar();
    if (typeof ResizeObserver !== "undefined") {
      this.resizer = new ResizeObserver(() => this.fitLayout());
      this.resizer.observe(this.root);
    }
  }

  // Where the side panel goes: beside the canvas while that leaves the canvas MIN_CANVAS_W,
  // else under it (class wfk-stacked). Folded columns leave their room to the canvas.
  fitLayout() {
    const width = this.root.clientWidth;
    if (!width) return; // not on the page (yet)
    const palette = this.hidden.palette ? 0 : this.palette.offsetWidth;
    const panel = this.hidden.panel ? 0 : PANEL_W;
    this.root.classList.toggle("wfk-stacked", width - palette - panel < MIN_CANVAS_W);
  }

  togglePane(which, button) {
    this.hidden[which] = !this.hidden[which];
    this.root.classList.toggle(`wfk-hide-${which}`, this.hidden[which]);
    button.setAttribute("aria-pressed", String(!this.hidden[which]));
    this.fitLayout();
  }

  renderAll() {
    this.renderGraph();
    this.renderPalette();
    this.renderPanel();
    this.renderProblems();
    this.renderStatus();
  }

  renderToolbar() {
    // A button's accessible name holds the words it shows ("label in name"): "click Tidy layout",
    // said to voice control, or a screen reader's list of buttons, finds it.
    const button = (label, text, onclick, extra = {}) => h("button", { type: "button", "aria-label": label, title: label, onclick, ...extra }, text);
    this.statusLine = h("span", { class: "wfk-status", role: "status", "aria-live": "polite" });
    this.toolbar.append(
      h("strong", { class: "wfk-title", text: "" }),
      button("Save flow spec", "Save", () => this.save(), { class: "wfk-primary" }),
      button("Undo (Ctrl+Z)", "Undo", () => this.undo()),
      button("Redo (Ctrl+Shift+Z)", "Redo", () => this.redo()),
      button("Tidy layout: lay out the graph again", "Tidy layout", () => this.change(() => this.autoLayout(true))),
      this.paneToggle("palette", "Steps: show or hide the step functions", "Steps"),
      this.paneToggle("panel", "Details: show or hide the details of the selected step or route", "Details"),
      this.statusLine,
    );
  }

  paneToggle(which, label, text) {
    const toggle = h("button", {
      type: "button",
      class: "wfk-toggle",
      "aria-label": label,
      title: label,
      "aria-pressed": "true",
      "aria-controls": `${this.uid}-${which}`,
    }, text);
    toggle.addEventListener("click", () => this.togglePane(which, toggle));
    return toggle;
  }

  renderStatus() {
    const title = this.toolbar.querySelector(".wfk-title");
    title.textContent = `${this.spec.name || "flow"} · ${this.model.get("path") || ""}`;
    const file = (this.model.get("path") || "").split(/[\\/]/).pop();
    const unsaved = JSON.stringify(this.spec) !== this.statusFor;
    this.statusLine.textContent = this.localStatus || (unsaved ? `unsaved changes: Save writes ${file}` : this.model.get("status") || "");
    this.localStatus = "";
  }

  save() {
    this.saving = JSON.stringify(this.spec);
    // A kernel that stopped (shut down, restarted, died) never answers, or its connection refuses
    // the message: Save did nothing, and the status line still read "unsaved changes".
    clearTimeout(this.saveTimer);
    this.saveTimer = setTimeout(() => this.noAnswer(), SAVE_WAIT_MS);
    try {
      this.sync();
      this.model.send({ type: "save", spec: clone(this.spec) });
    } catch (error) {
      clearTimeout(this.saveTimer);
      this.noAnswer();
    }
  }

  // No answer to Save: the status line says so, and the problems list no longer reads "no problems"
  // (that was the kernel's word on the flow as it was, before the edits it never saw).
  noAnswer() {
    this.unanswered = true; // until the kernel speaks again (an answer to Save, problems it sends)
    this.setStatus(NO_ANSWER);
    this.renderProblems();
  }

  renderPalette() {
    const items = this.model.get("palette") || [];
    const inputId = `${this.uid}-new`;
    const asyncId = `${this.uid}-async`;
    const newName = h("input", { id: inputId, type: "text", placeholder: "function_name", autocomplete: "off" });
    const isAsync = h("input", { id: asyncId, type: "checkbox" });
    const create = () => {
      const name = newName.value.trim();
      if (!name) return this.setStatus("type a function name for the new step first");
      this.model.send({ type: "new_step", name, is_async: isAsync.checked });
    };
    newName.addEventListener("keydown", (event) => {
      if (event.key === "Enter") create();
    });
    this.palette.replaceChildren(
      ...[
      h("h4", { text: "Step functions" }),
      h(
        "ul",
        { class: "wfk-palette-list" },
        items.map((item) =>
          h(
            "li",
            {},
            h(
              "button",
              {
                type: "button",
                class: "wfk-palette-item",
                "aria-label": `Add step ${item.name}`,
                title: `${item.ref}${item.doc ? `: ${item.doc}` : ""}`,
                onclick: () => this.addStep(item.name, item.ref),
              },
              `+ ${item.name}`,
            ),
          ),
        ),
      ),
      items.length ? null : h("p", { class: "wfk-hint", text: "No step functions on offer yet: type a name under New step and click Write stub." }),
      h("h4", { text: "New step" }),
      h("label", { for: inputId, text: "Function name" }),
      newName,
      h("label", { class: "wfk-inline" }, isAsync, " async"),
      h("button", { type: "button", "aria-label": "Write stub: a new step function to fill in", onclick: create }, "Write stub"),
      ].filter(Boolean),
    );
  }

  problemsByTarget(problems = this.model.get("problems")) {
    const steps = {};
    const edges = {};
    for (const problem of problems || []) {
      const target = problemTarget(problem.path);
      if (target.edge) (edges[target.edge] = edges[target.edge] || []).push(problem.message);
      else if (target.step) (steps[target.step] = steps[target.step] || []).push(problem.message);
    }
    return { steps, edges };
  }

  renderProblems() {
    if (this.unanswered) {
      this.problemsBox.replaceChildren(h("span", { class: "wfk-unchecked", text: "Not checked: the kernel does not answer, so the edits since it last did are not checked." }));
      return;
    }
    const problems = this.model.get("problems") || [];
    if (!problems.length) {
      this.problemsBox.replaceChildren(h("span", { class: "wfk-ok", text: "✓ The kernel finds no problems." }));
      return;
    }
    this.problemsBox.replaceChildren(
      h("strong", { text: `${problems.length} problem${problems.length === 1 ? "" : "s"} found by the kernel:` }),
      h(
        "ul",
        {},
        problems.map((problem) => {
          const target = problemTarget(problem.path);
          return h(
            "li",
            {},
            h(
              "button",
              {
                type: "button",
                class: "wfk-problem",
                onclick: () => (target.edge ? this.select({ edge: target.edge }) : target.step ? this.select({ step: target.step }) : null),
              },
              problem.message,
            ),
          );
        }),
      ),
    );
  }

  position(name) {
    return this.layout[name];
  }

  renderGraph() {
    const svg = this.svg;
    const spec = this.spec;
    const steps = spec.steps || {};
    const edges = edgeList(spec);
    const bad = this.problemsByTarget();
    const nodes = {};
    for (const name of Object.keys(steps)) nodes[name] = { name, pos: this.position(name) || [30, 30], missing: false };
    // Targets that are not steps (deleted, or a typo): drawn as ghosts so the route stays visible.
    let ghostIndex = 0;
    for (const edge of edges) {
      if (edge.dst !== END && !(edge.dst in nodes)) {
        const from = nodes[edge.src] ? nodes[edge.src].pos : [30, 30];
        const place = this.layout[edge.dst] || this.kept[`place:${edge.dst}`] || [from[0] + 60 * ghostIndex++, from[1] + NODE_H + 90];
        nodes[edge.dst] = { name: edge.dst, pos: place, missing: true };
      }
    }
    if (edges.some((e) => e.dst === END)) {
      const bottom = Math.max(30, ...Object.values(nodes).map((n) => n.pos[1])) + NODE_H + 70;
      nodes[END] = { name: END, pos: this.layout[END] || [30 + NODE_W / 2 - 35, bottom], end: true };
    }
    const maxX = Math.max(700, ...Object.values(nodes).map((n) => n.pos[0] + NODE_W + 200));
    const maxY = Math.max(360, ...Object.values(nodes).map((n) => n.pos[1] + NODE_H + 60));
    svg.setAttribute("width", maxX);
    svg.setAttribute("height", maxY);
    svg.setAttribute("viewBox", `0 0 ${maxX} ${maxY}`);
    const children = [
      s("defs", {}, s("marker", { id: `${this.uid}-arrow`, viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" }, s("path", { d: "M0,0 L10,5 L0,10 z", fill: "#555" })),
        s("marker", { id: `${this.uid}-arrow-bad`, viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" }, s("path", { d: "M0,0 L10,5 L0,10 z", fill: "#b91c1c" }))),
    ];
    const pairs = {};
    for (const edge of edges) (pairs[`${edge.src}\u0000${edge.dst}`] = pairs[`${edge.src}\u0000${edge.dst}`] || []).push(edge.id);
    const tags = [];
    for (const edge of edges) {
      const a = nodes[edge.src];
      const b = nodes[edge.dst];
      if (!a || !b) continue;
      const siblings = pairs[`${edge.src}\u0000${edge.dst}`];
      const offset = (siblings.indexOf(edge.id) - (siblings.length - 1) / 2) * 60;
      const drawn = this.edgeElement(edge, a, b, offset, bad.edges[edge.id]);
      children.push(drawn.line);
      if (drawn.tag) tags.push(drawn.tag);
    }
    // Labels go above every edge, so a label is never covered by another edge.
    children.push(...placeLabels(tags, Object.values(nodes).map((n) => ({ x: n.pos[0] + NODE_W / 2, y: n.pos[1] + NODE_H / 2, w: n.end ? 70 : NODE_W, h: n.end ? 28 : NODE_H }))));
    for (const node of Object.values(nodes)) children.push(this.nodeElement(node, steps[node.name], bad.steps[node.name]));
    if (this.drag && this.drag.kind === "connect" && this.drag.to) {
      const [x, y] = this.drag.from;
      children.push(s("line", { x1: x, y1: y, x2: this.drag.to[0], y2: this.drag.to[1], class: "wfk-temp" }));
    }
    const focused = this.root.contains(document.activeElement) ? document.activeElement.getAttribute("data-key") : null;
    svg.replaceChildren(...children);
    if (focused) {
      const again = svg.querySelector(`[data-key="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
  }

  edgeElement(edge, a, b, offset, problems) {
    const w = b.end ? 70 : NODE_W;
    // Every edge is one cubic Bézier curve: its four points draw it and place its label.
    let curve;
    if (edge.src === edge.dst) {
      const x = a.pos[0] + NODE_W;
      const y = a.pos[1] + NODE_H / 2;
      curve = [[x, y - 8], [x + 70, y - 40], [x + 70, y + 40], [x + 2, y + 8]];
    } else if (b.pos[1] > a.pos[1] + NODE_H / 2) {
      const sx = a.pos[0] + NODE_W / 2;
      const sy = a.pos[1] + NODE_H;
      const ex = b.pos[0] + w / 2;
      const ey = b.pos[1];
      curve = [[sx, sy], [sx + offset, sy + 45], [ex + offset, ey - 45], [ex, ey - 2]];
    } else {
      const sx = a.pos[0] + NODE_W;
      const sy = a.pos[1] + NODE_H / 2;
      const ex = b.pos[0] + w;
      const ey = b.pos[1] + NODE_H / 2;
      const bulge = Math.max(sx, ex) + 60 + Math.abs(offset);
      curve = [[sx, sy], [bulge, sy], [bulge, ey], [ex + 2, ey]];
    }
    const d = `M${curve[0][0]},${curve[0][1]} C${curve
      .slice(1)
      .map((p) => `${p[0]},${p[1]}`)
      .join(" ")}`;
    const label = edgeLabel(edge);
    const selected = this.selected && this.selected.edge === edge.id;
    const classes = ["wfk-edge", `wfk-${edge.kind}`, problems ? "wfk-bad" : "", selected ? "wfk-selected" : ""].join(" ");
    const target = edge.dst === END ? "the end" : edge.dst;
    const what = { edge: "Connection", route: "Route", default: "Default route", fallback: "Fallback", reject: "Rejection route" }[edge.kind];
    const said = label.join("; ");
    const aria = `${what} from ${edge.src} to ${target}${said && edge.kind !== "default" ? `: ${said}` : ""}${problems ? `. Problem: ${problems.join(" ")}` : ""}`;
    const group = s(
      "g",
      {
        class: classes,
        tabindex: "0",
        role: "button",
        "aria-label": aria,
        "data-key": `edge:${edge.id}`,
        "data-edge": edge.id,
        onclick: (event) => {
          event.stopPropagation();
          this.select({ edge: edge.id });
        },
        onkeydown: (event) => {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            this.select({ edge: edge.id });
          }
        },
      },
      s("title", { text: problems ? `${aria}` : aria }),
      s("path", { d, class: "wfk-edge-hit" }),
      s("path", { d, class: "wfk-edge-line", "marker-end": `url(#${this.uid}-arrow${problems ? "-bad" : ""})` }),
    );
    const lines = labelLines(problems ? ["⚠ problem", ...label] : label);
    if (!lines.length) return { line: group, tag: null };
    const [width, height] = labelSize(lines);
    const build = (lx, ly) =>
      s(
        "g",
        {
          class: classes.replace("wfk-edge ", "wfk-edge-tag "),
          "data-label-for": edge.id,
          "aria-hidden": "true",
          onclick: (event) => {
            event.stopPropagation();
            this.select({ edge: edge.id });
          },
        },
        s("title", { text: aria }),
        s("rect", { x: lx - width / 2, y: ly - height / 2, width, height, rx: 4, class: "wfk-edge-label-bg" }),
        ...lines.map((line, i) => s("text", { x: lx, y: ly - height / 2 + 13 + 14 * i, "text-anchor": "middle", class: "wfk-edge-label", text: line })),
      );
    return { line: group, tag: { spots: labelSpots(curve), width, height, build } };
  }

  nodeElement(node, step, problems) {
    const [x, y] = node.pos;
    if (node.end) {
      return s("g", { class: "wfk-end", "aria-label": "The end" }, s("rect", { x, y, width: 70, height: 28, rx: 14 }), s("text", { x: x + 35, y: y + 18, "text-anchor": "middle", text: "end" }));
    }
    const name = node.name;
    const selected = this.selected && this.selected.step === name;
    const entry = this.spec.entry === name;
    const marks = [];
    if (step && step.approval) marks.push("approval");
    if (step && step.irreversible) marks.push("irreversible");
    if (step && step.max_visits) marks.push(`≤${step.max_visits} visits`);
    if (step && step.retry) marks.push("retry");
    if (step && step.timeout) marks.push(typeof step.timeout === "number" ? `${step.timeout}s` : `timeout ${JSON.stringify(step.timeout)}?`); // "2m" typed: not "2ms"
    const classes = ["wfk-node", node.missing ? "wfk-missing" : "", problems ? "wfk-bad" : "", selected ? "wfk-selected" : "", entry ? "wfk-entry" : ""].join(" ");
    const aria = node.missing
      ? `Missing step ${name}${problems ? `. Problem: ${problems.join(" ")}` : ""}`
      : `Step ${name}${entry ? " (entry)" : ""}${marks.length ? `, ${marks.join(", ")}` : ""}${problems ? `. Problem: ${problems.join(" ")}` : ""}`;
    const group = s(
      "g",
      {
        class: classes,
        tabindex: node.missing ? "-1" : "0",
        role: "button",
        "aria-label": aria,
        "data-key": `step:${name}`,
        "data-step": name,
        transform: `translate(${x},${y})`,
        onkeydown: (event) => this.onNodeKey(event, name, node.missing),
      },
      s("title", { text: problems ? `${aria}` : aria }),
      s("rect", {
        width: NODE_W,
        height: NODE_H,
        rx: 8,
        class: "wfk-node-box",
        onpointerdown: (event) => !node.missing && this.startMove(event, name),
      }),
      s("text", { x: NODE_W / 2, y: marks.length ? 18 : 27, "text-anchor": "middle", class: "wfk-node-name", "pointer-events": "none", text: node.missing ? `${name} (missing)` : name }),
    );
    if (marks.length) group.append(s("text", { x: NODE_W / 2, y: 34, "text-anchor": "middle", class: "wfk-node-marks", "pointer-events": "none", text: markLine(marks) }));
    if (problems) group.append(s("circle", { cx: NODE_W - 4, cy: 4, r: 8, class: "wfk-badge" }), s("text", { x: NODE_W - 4, y: 8, "text-anchor": "middle", class: "wfk-badge-text", "pointer-events": "none", text: "!" }));
    if (!node.missing) {
      group.append(
        s("circle", {
          cx: NODE_W / 2,
          cy: NODE_H,
          r: 7,
          class: "wfk-port",
          "data-port": name,
          "aria-label": `Drag from here to connect ${name} to another step`,
          onpointerdown: (event) => this.startConnect(event, name),
        }, s("title", { text: `Drag to another step to connect ${name} to it` })),
      );
    }
    return group;
  }

  // ---- pointer: move and connect ----

  svgPoint(event) {
    const point = this.svg.createSVGPoint();
    point.x = event.clientX;
    point.y = event.clientY;
    const m = this.svg.getScreenCTM();
    const p = m ? point.matrixTransform(m.inverse()) : point;
    return [p.x, p.y];
  }

  startMove(event, name) {
    event.stopPropagation();
    event.preventDefault();
    this.svg.setPointerCapture(event.pointerId);
    const [px, py] = this.svgPoint(event);
    const [x, y] = this.layout[name];
    this.drag = { kind: "move", name, dx: px - x, dy: py - y, before: JSON.stringify(this.spec), moved: false, start: [px, py] };
  }

  startConnect(event, name) {
    event.stopPropagation();
    event.preventDefault();
    this.svg.setPointerCapture(event.pointerId);
    const [x, y] = this.layout[name];
    this.drag = { kind: "connect", name, from: [x + NODE_W / 2, y + NODE_H], to: null };
  }

  nodeAt([px, py]) {
    for (const name of Object.keys(this.spec.steps || {})) {
      const [x, y] = this.layout[name];
      if (px >= x && px <= x + NODE_W && py >= y && py <= y + NODE_H + 8) return name;
    }
    return null;
  }

  onPointerMove(event) {
    if (!this.drag) return;
    const p = this.svgPoint(event);
    if (this.drag.kind === "move") {
      if (!this.drag.moved && Math.hypot(p[0] - this.drag.start[0], p[1] - this.drag.start[1]) < 3) return;
      this.drag.moved = true;
      this.layout[this.drag.name] = [Math.max(0, Math.round(p[0] - this.drag.dx)), Math.max(0, Math.round(p[1] - this.drag.dy))];
    } else {
      this.drag.to = p;
    }
    this.renderGraph();
  }

  onPointerUp(event) {
    const drag = this.drag;
    if (!drag) return;
    this.drag = null;
    if (this.svg.hasPointerCapture(event.pointerId)) this.svg.releasePointerCapture(event.pointerId);
    if (drag.kind === "move") {
      if (drag.moved) {
        this.undoStack.push(drag.before);
        this.redoStack = [];
        this.sync();
        this.renderGraph();
        this.renderStatus();
      } else {
        this.select({ step: drag.name });
      }
      return;
    }
    const target = this.nodeAt(this.svgPoint(event));
    if (target && target !== drag.name) this.connect(drag.name, target);
    else this.renderGraph();
  }

  // ---- keyboard ----

  onKey(event) {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName);
    const mod = event.ctrlKey || event.metaKey;
    if (mod && !typing && (event.key === "z" || event.key === "Z" || event.key === "y")) {
      event.preventDefault();
      event.stopPropagation();
      if (event.key === "y" || event.shiftKey) this.redo();
      else this.undo();
    } else if (mod && event.key === "s") {
      event.preventDefault();
      event.stopPropagation();
      // Ctrl+S pressed in a box still being typed in: what it shows is saved too (it was left out,
      // the status line said "saved", and the box kept the number the file did not have).
      if (typing && event.target.tagName !== "SELECT") event.target.dispatchEvent(new Event("change"));
      this.save();
    } else if (!typing) {
      event.stopPropagation(); // keys pressed inside the editor are the editor's, not the notebook's
    }
  }

  onNodeKey(event, name, missing) {
    if (missing) return;
    const step = event.shiftKey ? 50 : 10;
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      this.select({ step: name });
    } else if (event.key in moves) {
      event.preventDefault();
      const [dx, dy] = moves[event.key];
      this.change(() => {
        const [x, y] = this.layout[name];
        this.layout[name] = [Math.max(0, x + dx), Math.max(0, y + dy)];
      });
    } else if (event.key === "Delete" || event.key === "Backspace") {
      event.preventDefault();
      this.deleteStep(name);
    }
  }

  // ---- forms ----

  field(label, input) {
    const id = `${this.uid}-${label.replace(/\W+/g, "-").toLowerCase()}`;
    input.id = id;
    return h("div", { class: "wfk-field" }, h("label", { for: id, text: label }), input);
  }

  // A text box, not type="number": chromium's number box drops what it cannot read as typed ("1,5"
  // became 15, "2m" 2) and firefox's reads it as empty. What is not a number goes to the kernel as
  // typed, which refuses it with how to write it; the box keeps it meanwhile.
  numberInput(value, onValue, { whole = false, ...attrs } = {}) {
    const input = h("input", { type: "text", inputmode: whole ? "numeric" : "decimal", value: value === undefined || value === null ? "" : String(value), autocomplete: "off", spellcheck: "false", ...attrs });
    onCommit(input, (text) => {
      const typed = text.trim();
      onValue(typed === "" ? undefined : NUMBER.test(typed) ? Number(typed) : typed);
    });
    return input;
  }

  textInput(value, onValue, attrs = {}) {
    const input = h("input", { type: "text", value: value === undefined || value === null ? "" : String(value), autocomplete: "off", ...attrs });
    onCommit(input, (text) => onValue(text));
    return input;
  }

  // allowEnd: false where the kernel takes no end (a gate's On reject: rejected, the run fails or
  // goes on at a step), so the builder never offers what the kernel then refuses.
  targetSelect(current, onValue, { allowNone = false, allowEnd = true } = {}) {
    const select = h("select", {});
    const options = [...(allowNone ? [["", "(none)"]] : []), ...Object.keys(this.spec.steps || {}).map((n) => [n, n])];
    if (allowEnd || current === END) options.push([END, allowEnd ? "end (finish the branch)" : "end (not allowed here)"]);
    if (current && current !== END && !(current in (this.spec.steps || {}))) options.push([current, `${current} (missing)`]);
    for (const [value, text] of options) select.append(h("option", { value, selected: value === (current || "") }, text));
    select.addEventListener("change", () => onValue(select.value));
    return select;
  }

  toolChecks(current, onValue, legend) {
    const tools = this.model.get("tools") || [];
    const chosen = new Set(current || []);
    const box = h("fieldset", { class: "wfk-tools" }, h("legend", { text: legend }));
    if (!tools.length) box.append(h("p", { class: "wfk-hint", text: "No tools on offer in this builder." }));
    for (const tool of tools) {
      const check = h("input", { type: "checkbox", checked: chosen.has(tool.name), "aria-label": `Tool ${tool.name}` });
      check.addEventListener("change", () => {
        if (check.checked) chosen.add(tool.name);
        else chosen.delete(tool.name);
        onValue(tools.map((t) => t.name).filter((n) => chosen.has(n)));
      });
      box.append(h("label", { class: "wfk-inline", title: tool.description }, check, ` ${tool.name}`));
    }
    return box;
  }

  conditionEditor(condition, onValue, label, where) {
    let root = clone(condition);
    const commit = () => onValue(clone(root));
    const ops = this.model.get("operators") || ["eq", "ne", "gt", "ge", "lt", "le", "contains", "in", "exists"];
    const blank = () => ({ field: "", op: "eq", value: "" });
    const nodeView = (raw, path, inGroup) => {
      const negated = raw && typeof raw === "object" && "not" in raw;
      const inner = negated ? raw.not : raw;
      const innerPath = negated ? [...path, "not"] : path;
      const notBox = h("input", { type: "checkbox", checked: negated, "aria-label": "not: negate this condition" });
      notBox.addEventListener("change", () => {
        root = setAt(root, path, negated ? clone(inner) : { not: clone(inner) });
        commit();
      });
      const remove = inGroup
        ? h("button", {
            type: "button",
            class: "wfk-small",
            "aria-label": "Remove this condition",
            onclick: () => {
              const parent = getAt(root, path.slice(0, -1));
              parent.splice(path[path.length - 1], 1);
              commit();
            },
          }, "✕")
        : null;
      if (inner && ("all" in inner || "any" in inner)) {
        const key = "all" in inner ? "all" : "any";
        const mode = h("select", { "aria-label": "Group: all or any" }, h("option", { value: "all", selected: key === "all" }, "all of (and)"), h("option", { value: "any", selected: key === "any" }, "any of (or)"));
        mode.addEventListener("change", () => {
          const target = getAt(root, innerPath);
          const parts = target[key];
          delete target[key];
          target[mode.value] = parts;
          commit();
        });
        const add = (what) => () => {
          getAt(root, innerPath)[key].push(what());
          commit();
        };
        return h(
          "div",
          { class: "wfk-group" },
          h("div", { class: "wfk-row" }, h("label", { class: "wfk-inline" }, notBox, " not"), mode, remove),
          inner[key].map((part, i) => nodeView(part, [...innerPath, key, i], true)),
          h("div", { class: "wfk-row" },
            h("button", { type: "button", class: "wfk-small", "aria-label": "Add a condition to this group", onclick: add(blank) }, "+ condition"),
            h("button", { type: "button", class: "wfk-small", "aria-label": "Add a nested group", onclick: add(() => ({ any: [blank()] })) }, "+ group"),
          ),
        );
      }
      const fieldInput = h("input", { type: "text", value: inner.field || "", placeholder: "field", "aria-label": "Condition field", autocomplete: "off" });
      onCommit(fieldInput, (text) => {
        getAt(root, innerPath).field = text.trim();
        commit();
      });
      const op = h("select", { "aria-label": "Condition operator" }, ops.map((o) => h("option", { value: o, selected: o === inner.op }, o)));
      op.addEventListener("change", () => {
        const target = getAt(root, innerPath);
        target.op = op.value;
        if (op.value === "in" && !Array.isArray(target.value)) target.value = target.value === "" || target.value === undefined ? [] : [target.value];
        commit();
      });
      const bad = problemsAt(this.model.get("problems"), [...where, ...innerPath, "value"]); // where: the condition's path in the spec
      const said = bad.length ? h("div", { class: "wfk-field-problem", id: `${this.uid}-value-${innerPath.join("-")}`, text: bad.join(" ") }) : null;
      // A box that wraps and grows with its text, on a line of its own: a long `in` list is seen,
      // and edited, whole (a one-line box showed its first few values). Enter still commits.
      const shownValue = valueText(inner.value, inner.op);
      const valueInput = h("textarea", {
        text: shownValue, rows: Math.min(8, Math.max(1, Math.ceil(shownValue.length / 40))), // where field-sizing is unknown
        placeholder: inner.op === "in" ? "a, b, c" : "value", "aria-label": "Condition value", autocomplete: "off", spellcheck: "false",
        class: said ? "wfk-value wfk-invalid" : "wfk-value", "aria-invalid": said ? "true" : null, "aria-describedby": said ? said.id : null,
      });
      onCommit(valueInput, (text) => {
        getAt(root, innerPath).value = parseValue(text, getAt(root, innerPath).op);
        commit();
      });
      const compare = h("div", { class: "wfk-row wfk-compare" }, h("label", { class: "wfk-inline" }, notBox, " not"), fieldInput, op, remove, valueInput);
      const row = said ? h("div", {}, compare, said) : compare;
      if (inGroup) return row;
      const wrap = (key) => () => {
        root = { [key]: [clone(root), blank()] };
        commit();
      };
      return h("div", {}, row, h("div", { class: "wfk-row" },
        h("button", { type: "button", class: "wfk-small", "aria-label": "Add a condition joined with and", onclick: wrap("all") }, "+ and"),
        h("button", { type: "button", class: "wfk-small", "aria-label": "Add a condition joined with or", onclick: wrap("any") }, "+ or"),
      ));
    };
    return h("fieldset", { class: "wfk-condition" }, h("legend", { text: label }), nodeView(root, [], false));
  }

  renderPanel() {
    const panel = this.panel;
    const focused = panel.contains(document.activeElement) ? document.activeElement : null;
    const focusedKey = focused ? focused.getAttribute("aria-label") || focused.id : null;
    // Text typed into the focused field and not committed yet (no Enter, no blur): the kernel's
    // answer to an earlier change may redraw the form meanwhile, and must not wipe it.
    const typed = focused && (focused.tagName === "TEXTAREA" || (focused.tagName === "INPUT" && focused.type !== "checkbox"))
      && focused.value !== (focused.dataset.committed ?? focused.defaultValue)
      ? { value: focused.value, start: focused.selectionStart, end: focused.selectionEnd }
      : null;
    if (this.selected && this.selected.edge) {
      const edge = this.findEdge(this.selected.edge);
      panel.replaceChildren(edge ? this.edgeForm(edge) : h("p", { text: "Select a step or a connection." }));
    } else if (this.selected && this.selected.step && this.spec.steps && this.spec.steps[this.selected.step]) {
      panel.replaceChildren(this.stepForm(this.selected.step));
    } else {
      panel.replaceChildren(
        h("h4", { text: "Nothing selected" }),
        h("p", { class: "wfk-hint", text: "Click a step to set its retry, timeout, approval and visit bound. Drag from the dot under a step to another step to connect them; click a connection to make it a route with a condition and tools." }),
      );
    }
    if (focusedKey) {
      const again = [...panel.querySelectorAll("input, textarea, select, button")].find((n) => (n.getAttribute("aria-label") || n.id) === focusedKey);
      if (again) {
        if (typed && again.tagName === focused.tagName && again.type === focused.type) {
          again.value = typed.value; // still to be committed: Enter or leaving the field does it
          if (typed.start !== null) again.setSelectionRange(typed.start, typed.end);
        }
        again.focus();
      }
    }
  }

  edgeForm(edge) {
    const what = { edge: "Connection", route: "Route", default: "Default route", fallback: "Fallback", reject: "Rejection route" }[edge.kind];
    const bad = this.problemsByTarget(formProblems(this.model.get("problems"))).edges[edge.id];
    const parts = [h("h4", { text: `${what}: ${edge.src} → ${edge.dst === END ? "end" : edge.dst}` })];
    if (bad) parts.push(h("ul", { class: "wfk-form-problems" }, bad.map((m) => h("li", { text: m }))));
    if (edge.kind === "edge" || edge.kind === "route" || edge.kind === "default") {
      const kind = h("select", {}, [
        ["edge", "always (runs in parallel with other connections)"],
        ["route", "when a condition holds (route)"],
        ["default", "otherwise (default route)"],
      ].map(([value, text]) => h("option", { value, selected: value === edge.kind }, text)));
      kind.addEventListener("change", () => this.setEdgeKind(edge, kind.value));
      parts.push(this.field("Kind", kind));
    }
    parts.push(this.field("Goes to", this.targetSelect(edge.dst, (value) => this.retarget(edge, value))));
    if (edge.kind === "route") {
      parts.push(this.conditionEditor(edge.route.when, (when) => this.updateRoute(edge, (route) => (route.when = when)), "Condition", ["routes", edge.src, "routes", edge.index, "when"]));
      const count = this.spec.routes[edge.src].routes.length;
      parts.push(h("div", { class: "wfk-row" },
        h("span", { text: `Tried ${edge.index + 1} of ${count}` }),
        h("button", { type: "button", class: "wfk-small", "aria-label": "Try this route earlier", disabled: edge.index === 0, onclick: () => this.moveRoute(edge, -1) }, "↑ earlier"),
        h("button", { type: "button", class: "wfk-small", "aria-label": "Try this route later", disabled: edge.index === count - 1, onclick: () => this.moveRoute(edge, 1) }, "↓ later"),
      ));
    }
    if (edge.kind === "route" || edge.kind === "default") {
      const bound = Array.isArray(edge.route.tools);
      const bind = h("input", { type: "checkbox", checked: bound, "aria-label": "Bind tools on this route" });
      bind.addEventListener("change", () => this.updateRoute(edge, (route) => {
        if (bind.checked) route.tools = [];
        else delete route.tools;
      }));
      parts.push(h("label", { class: "wfk-inline" }, bind, " bind tools on this route (else the step's own tools)"));
      parts.push(this.toolChecks(edge.route.tools, (tools) => this.updateRoute(edge, (route) => (route.tools = tools)), "Tools the next step may use"));
    }
    parts.push(h("button", { type: "button", class: "wfk-danger", onclick: () => this.deleteEdge(edge) }, `Delete this ${what.toLowerCase()}`));
    return h("div", { class: "wfk-form" }, parts);
  }

  stepForm(name) {
    const step = this.spec.steps[name];
    const bad = this.problemsByTarget(formProblems(this.model.get("problems"))).steps[name];
    const palette = this.model.get("palette") || [];
    const parts = [h("h4", { text: `Step: ${name}` })];
    if (bad) parts.push(h("ul", { class: "wfk-form-problems" }, bad.map((m) => h("li", { text: m }))));
    const refused = this.renameRefused && this.renameRefused.step === name ? this.renameRefused : null;
    const nameBox = this.textInput(refused ? refused.typed : name, (typed) => this.renameStep(name, typed), {
      class: refused ? "wfk-invalid" : null,
      "aria-invalid": refused ? "true" : null,
      "aria-describedby": refused ? `${this.uid}-rename-problem` : null,
    });
    parts.push(this.field("Name", nameBox));
    if (refused) parts.push(h("div", { class: "wfk-field-problem", id: `${this.uid}-rename-problem`, text: refused.message }));
    const fn = h("select", {}, palette.map((item) => h("option", { value: item.ref, selected: item.ref === step.fn }, `${item.name} (${item.ref})`)));
    if (!palette.some((item) => item.ref === step.fn)) fn.append(h("option", { value: step.fn, selected: true }, `${step.fn} (not in the palette)`));
    fn.addEventListener("change", () => this.updateStep(name, (st) => (st.fn = fn.value)));
    parts.push(this.field("Function", fn));
    const entry = h("input", { type: "checkbox", checked: this.spec.entry === name, disabled: this.spec.entry === name });
    entry.addEventListener("change", () => this.change((spec) => (spec.entry = name)));
    parts.push(h("label", { class: "wfk-inline" }, entry, " entry step (the run starts here)"));

    const setOption = (key) => (value) => this.updateStep(name, (st) => {
      if (value === undefined || value === "" || value === null) delete st[key];
      else st[key] = value;
    });
    const setRetry = (key) => (value) => this.updateStep(name, (st) => {
      const retry = { ...(st.retry || {}) };
      if (value === undefined) delete retry[key];
      else retry[key] = value; // a fraction of a count is the kernel's to refuse, not ours to round
      if (Object.keys(retry).length === 0) delete st.retry;
      else st.retry = retry;
    });
    const retry = step.retry || {};
    // A blank box says what the step does without it: no retries at all, or the policy's default.
    const defaults = this.model.get("retry_defaults") || {};
    const unset = (key) => (!step.retry ? (key === "max_retries" ? "0: no retries" : null) : `${defaults[key]} (default)`);
    const retryInput = (key, attrs) => this.numberInput(retry[key], setRetry(key), { ...attrs, placeholder: unset(key) });
    parts.push(h("fieldset", {}, h("legend", { text: "Retry on transient errors" }),
      this.field("Retries", retryInput("max_retries", { whole: true })),
      this.field("First wait (s)", retryInput("base_delay", {})),
      this.field("Longest wait (s)", retryInput("max_delay", {})),
    ));
    parts.push(this.field("Timeout per attempt (s)", this.numberInput(step.timeout, setOption("timeout"))));
    parts.push(this.field("Visit bound (max visits in a loop)", this.numberInput(step.max_visits, setOption("max_visits"), { whole: true })));
    parts.push(this.field("On failure go to", this.targetSelect(step.fallback, setOption("fallback"), { allowNone: true })));
    const irreversible = h("input", { type: "checkbox", checked: !!step.irreversible });
    irreversible.addEventListener("change", () => setOption("irreversible")(irreversible.checked || undefined));
    parts.push(h("label", { class: "wfk-inline" }, irreversible, " irreversible (runs at most once: an email, a payment)"));
    parts.push(this.toolChecks(step.tools, (tools) => setOption("tools")(tools.length ? tools : undefined), "Its own tools (when no route binds others)"));

    const approval = step.approval;
    const gate = h("input", { type: "checkbox", checked: !!approval });
    // Unticked, the gate's settings are kept aside: ticked again, they come back (a reason, payload,
    // condition and on-reject typed were replaced by "needs a human's yes", which saved cleanly).
    gate.addEventListener("change", () => this.updateStep(name, (st) => {
      if (gate.checked) st.approval = this.kept[`approval:${name}`] || { reason: "needs a human's yes" };
      else {
        this.kept[`approval:${name}`] = clone(st.approval);
        delete st.approval;
      }
    }));
    const gateBox = h("fieldset", {}, h("legend", { text: "Approval" }), h("label", { class: "wfk-inline" }, gate, " a human approves before it runs"));
    if (approval) {
      const setApproval = (key) => (value) => this.updateStep(name, (st) => {
        if (value === undefined || value === "" || (Array.isArray(value) && value.length === 0)) delete st.approval[key];
        else st.approval[key] = value;
      });
      // A reason cleared stays cleared (it came back as the default text, unasked, and was saved as
      // if someone had written it): the kernel asks for one under the box, and Save waits for it.
      const reasonPath = ["steps", name, "approval", "reason"];
      const noReason = problemsAt(this.model.get("problems"), reasonPath);
      const reasonSaid = noReason.length ? h("div", { class: "wfk-field-problem", id: `${this.uid}-reason-problem`, text: noReason.join(" ") }) : null;
      const reason = this.textInput(approval.reason, (v) => this.updateStep(name, (st) => (st.approval.reason = v.trim())), {
        placeholder: "why a human must say yes",
        class: reasonSaid ? "wfk-invalid" : null,
        "aria-invalid": reasonSaid ? "true" : null,
        "aria-describedby": reasonSaid ? reasonSaid.id : null,
      });
      gateBox.append(...[
        this.field("Reason", reason),
        reasonSaid,
        this.field("Payload fields (comma-separated)", this.textInput(Array.isArray(approval.payload) ? approval.payload.join(", ") : approval.payload || "", (v) => setApproval("payload")(v.includes(":") ? v.trim() : v.split(",").map((p) => p.trim()).filter(Boolean)))),
        this.field("On reject go to", this.targetSelect(approval.on_reject, setApproval("on_reject"), { allowNone: true, allowEnd: false })),
      ].filter(Boolean));
      const conditional = h("input", { type: "checkbox", checked: !!approval.when });
      conditional.addEventListener("change", () => setApproval("when")(conditional.checked ? { field: "", op: "gt", value: 0 } : undefined));
      gateBox.append(h("label", { class: "wfk-inline" }, conditional, " only when a condition holds"));
      if (approval.when) gateBox.append(this.conditionEditor(approval.when, (when) => setApproval("when")(when), "Gate condition", ["steps", name, "approval", "when"]));
    }
    parts.push(gateBox);

    const others = Object.keys(this.spec.steps).filter((n) => n !== name);
    const connectTo = h("select", {}, [...others, name].map((n) => h("option", { value: n }, n)));
    parts.push(h("fieldset", {}, h("legend", { text: "Connect (keyboard)" }),
      this.field("Connect to", connectTo),
      h("button", { type: "button", "aria-label": `Add connection: connect ${name} to the chosen step`, onclick: () => this.connect(name, connectTo.value) }, "Add connection"),
    ));
    parts.push(h("button", { type: "button", class: "wfk-danger", "aria-label": `Delete step ${name}`, onclick: () => this.deleteStep(name) }, "Delete step"));
    return h("div", { class: "wfk-form" }, parts);
  }
}

function render({ model, el }) {
  const editor = new Editor(model, el);
  return () => editor.destroy();
}

export default { render };
