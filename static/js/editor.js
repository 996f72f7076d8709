/* Switchboard flow editor: renders a switchboard.flow/v1 document in Drawflow, edits it with undo, and exports it back. */
(function () {
  "use strict";

  var SCHEMA = "switchboard.flow/v1";
  var GROUPS = [["trigger", "Triggers"], ["logic", "Logic"], ["action", "Actions"]];
  var APPLY_DELAY_MS = 350;     // a node form applies this long after the last keystroke
  var HISTORY_LIMIT = 200;
  var PASTE_OFFSET = 40;
  var CLIPBOARD_KEY = "sb:editor-clipboard";

  function esc(text) {
    return String(text == null ? "" : text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function clone(value) {
    return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
  }

  function same(a, b) {
    return JSON.stringify(a) === JSON.stringify(b);
  }

  function readJson(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function csrfHeaders() {
    var token = document.querySelector('meta[name="csrf-token"]');
    var header = document.querySelector('meta[name="csrf-header"]');
    var headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (token && token.content) headers[(header && header.content) || "X-CSRF-Token"] = token.content;
    return headers;
  }

  // Keys typed into a field belong to the field, not to the canvas.
  function isTyping(el) {
    return !!el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);
  }

  function Editor(root, options) {
    options = options || {};
    this.root = root;
    this.types = {};
    this.typeList = options.nodeTypes || readJson("node-types") || [];
    for (var i = 0; i < this.typeList.length; i++) this.types[this.typeList[i].type] = this.typeList[i];
    this.flowId = root.getAttribute("data-flow-id") || "";
    this.apiBase = root.getAttribute("data-api-base") || "";
    this.formUrl = root.getAttribute("data-form-url") || "";
    this.validateUrl = root.getAttribute("data-validate-url") || "";
    // The draft revision we loaded: sent as If-Match so a save never overwrites someone else's newer save.
    this.revision = root.getAttribute("data-revision") || "";
    this.canvas = root.querySelector("#canvas");
    this.panel = root.querySelector("#node-panel");
    this.errorList = root.querySelector("#flow-errors");
    this.status = root.querySelector("#editor-status");
    this.meta = {};
    // Node id -> the line its card shows. The server computes it from the node type (flows/nodes/):
    // #node-summaries on load, "summary" in palette entries, in sb:node-config and in a flow's JSON.
    this.summaries = options.summaries || readJson("node-summaries") || {};
    this.configs = {};   // flow node id -> config
    this.order = [];     // flow node ids in document order
    this.edgeOrder = []; // "from|to|port" keys in document order
    this.dfToFlow = {};
    this.flowToDf = {};
    this.errors = [];
    this.selection = []; // flow node ids, in the order they were picked
    this.formNode = null; // the node whose form the panel shows
    this.done = [];      // undo records, newest last
    this.undone = [];
    this.seq = 0;
    this.savedSeq = 0;   // the record the saved draft ends with
    this.metaDirty = false;
    this.dirty = false;
    this.loading = false;
    this.applying = false; // Drawflow events caused by the editor itself are not recorded again
    this.pasteCount = 0;
    this.df = this.createDrawflow();
    this.buildPalette();
    this.bindToolbar();
    this.bindKeys();
    this.bindForms();
    this.bindTester();
    this.bindWindow();
    var doc = options.document || readJson("flow-document");
    if (doc) this.load(doc);
    // A draft saved with problems opens with them on their nodes.
    var problems = options.errors || readJson("draft-errors");
    if (problems && problems.length) this.showErrors(problems);
  }

  // ---------- Drawflow ----------

  Editor.prototype.createDrawflow = function () {
    var self = this;
    var df = new window.Drawflow(this.canvas);
    df.reroute = false;
    df.zoom_min = 0.3;
    df.zoom_max = 1.6;
    // Deleting goes through the editor (recorded for undo, whole selection): Drawflow's own Delete key is off.
    df.key = function () {};
    var removeNodeId = df.removeNodeId.bind(df);
    df.removeNodeId = function (domId) {
      if (self.applying) return removeNodeId(domId);
      self.deleteNodes([self.dfToFlow[domId.slice(5)]]);
    };
    this.dfRemoveNodeId = removeNodeId;
    df.start();
    df.on("click", function (e) { self.onPointerDown(e); });
    df.on("mouseMove", function () { self.onDrag(); });
    df.on("nodeMoved", function () { self.onMoved(); });
    df.on("mouseUp", function () { self.paintSelection(); });
    df.on("nodeRemoved", function (dfId) { self.forget(dfId); });
    df.on("connectionCreated", function (c) { self.onConnect(c); });
    df.on("connectionRemoved", function (c) { self.onDisconnect(c); });
    // Shift-drag on the empty canvas draws a selection box instead of panning.
    this.canvas.addEventListener("mousedown", function (e) { self.startBoxSelect(e); }, true);
    return df;
  };

  Editor.prototype.dfData = function () {
    return this.df.drawflow.drawflow.Home.data;
  };

  Editor.prototype.typeOf = function (flowId) {
    var n = this.dfData()[this.flowToDf[flowId]];
    return n ? n.name : null;
  };

  Editor.prototype.nodeEl = function (flowId) {
    return this.flowToDf[flowId] === undefined ? null : this.canvas.querySelector("#node-" + this.flowToDf[flowId]);
  };

  Editor.prototype.setStatus = function (text, kind) {
    if (!this.status) return;
    this.status.textContent = text;
    this.status.title = text;
    this.status.className = "editor-status" + (kind ? " is-" + kind : "");
  };

  // Dirty = the graph is not the saved one (undo back to the save point is clean again) or the name changed.
  Editor.prototype.refreshDirty = function () {
    var top = this.done.length ? this.done[this.done.length - 1].seq : 0;
    var dirty = this.metaDirty || top !== this.savedSeq;
    if (dirty !== this.dirty || dirty) this.setStatus(dirty ? "Unsaved changes" : "Saved", dirty ? "warn" : "ok");
    this.dirty = dirty;
    this.refreshUndoButtons();
  };

  Editor.prototype.markSaved = function () {
    this.savedSeq = this.done.length ? this.done[this.done.length - 1].seq : 0;
    this.metaDirty = false;
    this.dirty = false;
  };

  // ---------- palette ----------

  Editor.prototype.buildPalette = function () {
    var self = this;
    var palette = this.root.querySelector("#palette");
    if (!palette) return;
    var html = "";
    GROUPS.forEach(function (g) {
      var items = self.typeList.filter(function (t) { return t.group === g[0]; });
      if (!items.length) return;
      html += '<section class="palette-group"><h3>' + esc(g[1]) + "</h3>";
      items.forEach(function (t) {
        html += '<button type="button" class="palette-item group-' + esc(t.group) + '" draggable="true" data-node-type="' +
          esc(t.type) + '" title="' + esc(t.description || "") + '">' + esc(t.label) + "</button>";
      });
      html += "</section>";
    });
    palette.innerHTML = html;
    palette.addEventListener("dragstart", function (e) {
      var item = e.target.closest && e.target.closest("[data-node-type]");
      if (!item) return;
      e.dataTransfer.setData("text/plain", item.getAttribute("data-node-type"));
      e.dataTransfer.effectAllowed = "copy";
    });
    // A click (or Enter) adds the node at the centre of the view: the keyboard path to the same result.
    palette.addEventListener("click", function (e) {
      var item = e.target.closest && e.target.closest("[data-node-type]");
      if (!item) return;
      var rect = self.canvas.getBoundingClientRect();
      var pos = self.toCanvas(rect.left + rect.width / 2 - 90, rect.top + rect.height / 2 - 30);
      self.addNode(item.getAttribute("data-node-type"), pos.x, pos.y);
    });
    this.canvas.addEventListener("dragover", function (e) { e.preventDefault(); e.dataTransfer.dropEffect = "copy"; });
    this.canvas.addEventListener("drop", function (e) {
      e.preventDefault();
      var type = e.dataTransfer.getData("text/plain");
      if (!self.types[type]) return;
      var pos = self.toCanvas(e.clientX, e.clientY);
      self.addNode(type, pos.x, pos.y);
    });
  };

  // Screen coordinates -> canvas coordinates, undoing Drawflow's pan and zoom.
  Editor.prototype.toCanvas = function (clientX, clientY) {
    var rect = this.df.precanvas.getBoundingClientRect();
    var scale = this.df.zoom || 1;
    return { x: Math.round((clientX - rect.left) / scale), y: Math.round((clientY - rect.top) / scale) };
  };

  // ---------- model <-> drawflow ----------

  Editor.prototype.ports = function (type) {
    var t = this.types[type];
    return t && t.out_ports && t.out_ports.length ? t.out_ports : [null];
  };

  Editor.prototype.hasInput = function (type) {
    var t = this.types[type];
    return !(t ? t.group === "trigger" : /^when\./.test(type));
  };

  Editor.prototype.nodeHtml = function (flowId, type) {
    var t = this.types[type] || { label: type, group: "unknown" };
    return '<div class="sb-node-head"><span class="sb-node-label">' + esc(t.label) + '</span><span class="sb-node-id">' + esc(flowId) +
      '</span></div><div class="sb-node-summary">' + esc(this.summaries[flowId] || "") + "</div>" +
      '<div class="sb-node-badge" hidden></div>';
  };

  Editor.prototype.dfNode = function (dfId, flowId, type, position) {
    var group = (this.types[type] || {}).group || "unknown";
    var outputs = {};
    var ports = this.ports(type);
    for (var i = 0; i < ports.length; i++) outputs["output_" + (i + 1)] = { connections: [] };
    return {
      id: dfId, name: type, data: { fid: flowId }, class: "sb-node group-" + group,
      html: this.nodeHtml(flowId, type), typenode: false,
      inputs: this.hasInput(type) ? { input_1: { connections: [] } } : {},
      outputs: outputs, pos_x: position.x, pos_y: position.y
    };
  };

  // Nodes saved without a position get a layered layout: depth from the triggers left to right.
  Editor.prototype.layout = function (doc) {
    var depth = {}, children = {}, placed = {}, rows = {};
    doc.nodes.forEach(function (n) { children[n.id] = []; });
    (doc.edges || []).forEach(function (e) { if (children[e.from]) children[e.from].push(e.to); });
    var queue = doc.nodes.filter(function (n) { return /^when\./.test(n.type); }).map(function (n) { depth[n.id] = 0; return n.id; });
    for (var guard = 0; queue.length && guard < 100000; guard++) {
      var id = queue.shift();
      (children[id] || []).forEach(function (c) {
        if (depth[c] === undefined || depth[c] < depth[id] + 1) { if (depth[id] + 1 < doc.nodes.length) { depth[c] = depth[id] + 1; queue.push(c); } }
      });
    }
    doc.nodes.forEach(function (n) {
      if (n.position) { placed[n.id] = n.position; return; }
      var d = depth[n.id] || 0;
      rows[d] = (rows[d] || 0) + 1;
      placed[n.id] = { x: 80 + d * 300, y: 60 + (rows[d] - 1) * 150 };
    });
    return placed;
  };

  // Replace the whole graph (open, rollback). History starts afresh: it described the old graph.
  Editor.prototype.load = function (doc, summaries) {
    if (summaries) this.summaries = summaries;
    var started = window.performance ? performance.now() : 0;
    this.loading = true;
    this.meta = {
      schema: doc.schema || SCHEMA, name: doc.name || "", description: doc.description || "",
      status: doc.status || "draft", priority: doc.priority || 0
    };
    this.fillMeta();
    this.configs = {}; this.order = []; this.dfToFlow = {}; this.flowToDf = {}; this.edgeOrder = [];
    this.selection = [];
    var positions = this.layout(doc);
    var data = {};
    var self = this;
    doc.nodes.forEach(function (n, i) {
      var dfId = i + 1;
      self.configs[n.id] = clone(n.config || {});
      self.order.push(n.id);
      self.dfToFlow[dfId] = n.id;
      self.flowToDf[n.id] = dfId;
      data[dfId] = self.dfNode(dfId, n.id, n.type, positions[n.id]);
    });
    (doc.edges || []).forEach(function (e) {
      var src = data[self.flowToDf[e.from]], dst = data[self.flowToDf[e.to]];
      if (!src || !dst || !dst.inputs.input_1) return;
      var portIndex = self.ports(src.name).indexOf(e.port === undefined ? null : e.port);
      if (portIndex < 0) portIndex = 0;
      var out = "output_" + (portIndex + 1);
      src.outputs[out].connections.push({ node: String(dst.id), output: "input_1" });
      dst.inputs.input_1.connections.push({ node: String(src.id), input: out });
      self.edgeOrder.push(self.edgeKey(e.from, e.to, self.ports(src.name)[portIndex]));
    });
    this.applying = true;
    this.df.import({ drawflow: { Home: { data: data } } });
    this.applying = false;
    this.decoratePorts();
    this.showErrors([]);
    this.done = []; this.undone = [];
    this.loading = false;
    this.markSaved();
    this.refreshDirty();
    this.setView(1, 0, 0);
    this.fitView(true);
    this.loadMs = window.performance ? performance.now() - started : 0;
  };

  // Drawflow draws bare circles; the port name makes success/failure and true/false visible.
  Editor.prototype.decoratePorts = function (onlyDfId) {
    var self = this;
    var nodes = onlyDfId ? [this.canvas.querySelector("#node-" + onlyDfId)] : this.canvas.querySelectorAll(".drawflow-node");
    Array.prototype.forEach.call(nodes, function (el) {
      if (!el) return;
      var ports = self.ports(self.dfData()[el.id.slice(5)].name);
      Array.prototype.forEach.call(el.querySelectorAll(".outputs .output"), function (o, i) {
        if (ports[i]) { o.setAttribute("data-port", ports[i]); o.setAttribute("title", ports[i]); }
      });
    });
  };

  Editor.prototype.edgeKey = function (from, to, port) {
    return from + "|" + to + "|" + (port == null ? "" : port);
  };

  Editor.prototype.newId = function (taken) {
    var max = 0;
    this.order.concat(taken || []).forEach(function (id) { var m = /^n(\d+)$/.exec(id); if (m) max = Math.max(max, parseInt(m[1], 10)); });
    var id = "n" + (max + 1);
    while (this.configs[id]) id = "n" + (++max + 1);
    return id;
  };

  // The edge of a Drawflow connection, in flow terms.
  Editor.prototype.edgeOf = function (c) {
    var from = this.dfToFlow[c.output_id], to = this.dfToFlow[c.input_id];
    if (from === undefined || to === undefined) return null;
    var port = this.ports(this.typeOf(from))[parseInt(String(c.output_class).slice(7), 10) - 1];
    var edge = { from: from, to: to };
    if (port != null) edge.port = port;
    return edge;
  };

  // Every edge touching one of `ids` (both ends or one).
  Editor.prototype.edgesTouching = function (ids) {
    var wanted = {}, out = [], self = this, data = this.dfData();
    ids.forEach(function (id) { wanted[id] = true; });
    this.order.forEach(function (from) {
      var n = data[self.flowToDf[from]];
      if (!n) return;
      var ports = self.ports(n.name);
      Object.keys(n.outputs).forEach(function (o) {
        var port = ports[parseInt(o.slice(7), 10) - 1];
        n.outputs[o].connections.forEach(function (c) {
          var to = self.dfToFlow[c.node];
          if (!wanted[from] && !wanted[to]) return;
          var edge = { from: from, to: to };
          if (port != null) edge.port = port;
          out.push(edge);
        });
      });
    });
    return out;
  };

  Editor.prototype.snapshotNode = function (flowId) {
    var n = this.dfData()[this.flowToDf[flowId]];
    return { id: flowId, type: n.name, config: clone(this.configs[flowId]) || {}, summary: this.summaries[flowId] || "",
      position: { x: Math.round(n.pos_x), y: Math.round(n.pos_y) }, index: this.order.indexOf(flowId) };
  };

  // ---------- primitive changes (used by user actions, undo and redo) ----------

  Editor.prototype.createNode = function (node) {
    var t = this.types[node.type] || { group: "unknown" };
    this.configs[node.id] = clone(node.config || {});
    this.summaries[node.id] = node.summary != null ? node.summary : (t.summary || "");
    if (node.index !== undefined && node.index >= 0 && node.index <= this.order.length) this.order.splice(node.index, 0, node.id);
    else this.order.push(node.id);
    var dfId = this.df.addNode(node.type, this.hasInput(node.type) ? 1 : 0, this.ports(node.type).length, node.position.x, node.position.y,
      "sb-node group-" + t.group, { fid: node.id }, this.nodeHtml(node.id, node.type));
    this.dfToFlow[dfId] = node.id;
    this.flowToDf[node.id] = dfId;
    this.decoratePorts(dfId);
  };

  Editor.prototype.destroyNode = function (flowId) {
    var dfId = this.flowToDf[flowId];
    if (dfId !== undefined) this.dfRemoveNodeId("node-" + dfId);
  };

  Editor.prototype.link = function (edge) {
    var from = this.flowToDf[edge.from], to = this.flowToDf[edge.to];
    if (from === undefined || to === undefined) return;
    var idx = this.ports(this.typeOf(edge.from)).indexOf(edge.port === undefined ? null : edge.port);
    this.df.addConnection(from, to, "output_" + (idx < 0 ? 1 : idx + 1), "input_1");
  };

  Editor.prototype.unlink = function (edge) {
    var from = this.flowToDf[edge.from], to = this.flowToDf[edge.to];
    if (from === undefined || to === undefined) return;
    var idx = this.ports(this.typeOf(edge.from)).indexOf(edge.port === undefined ? null : edge.port);
    this.df.removeSingleConnection(from, to, "output_" + (idx < 0 ? 1 : idx + 1), "input_1");
  };

  Editor.prototype.place = function (flowId, pos) {
    var dfId = this.flowToDf[flowId], n = this.dfData()[dfId], el = this.nodeEl(flowId);
    if (!n || !el) return;
    n.pos_x = pos.x; n.pos_y = pos.y;
    el.style.left = pos.x + "px"; el.style.top = pos.y + "px";
    this.df.updateConnectionNodes("node-" + dfId);
  };

  // `summary` is the card's line for this config; the server computes it from the node type (flows/nodes/).
  Editor.prototype.setConfig = function (flowId, config, summary) {
    if (!(flowId in this.configs)) return;
    this.configs[flowId] = clone(config);
    this.summaries[flowId] = summary || "";
    var el = this.canvas.querySelector("#node-" + this.flowToDf[flowId] + " .sb-node-summary");
    if (el) el.textContent = this.summaries[flowId];
  };

  // Forget a node Drawflow removed (our own removals and undo alike).
  Editor.prototype.forget = function (dfId) {
    var flowId = this.dfToFlow[dfId];
    delete this.dfToFlow[dfId];
    delete this.flowToDf[flowId];
    delete this.configs[flowId];
    delete this.summaries[flowId];
    this.order = this.order.filter(function (id) { return id !== flowId; });
    this.errors = this.errors.filter(function (e) { return e.node_id !== flowId; });
    if (this.selection.indexOf(flowId) >= 0) this.setSelection(this.selection.filter(function (id) { return id !== flowId; }));
  };

  // ---------- undo / redo ----------
  // A record is a list of changes; undo applies their inverses in reverse order.

  var INVERSE = { add: "remove", remove: "add", link: "unlink", unlink: "link", move: "move", config: "config" };

  Editor.prototype.run = function (change, forward) {
    var kind = forward ? change.op : INVERSE[change.op];
    if (kind === "add") this.createNode(change.node);
    else if (kind === "remove") this.destroyNode(change.node.id);
    else if (kind === "link") this.link(change.edge);
    else if (kind === "unlink") this.unlink(change.edge);
    else if (kind === "move") this.place(change.id, forward ? change.to : change.from);
    else if (kind === "config") {
      this.setConfig(change.id, forward ? change.after : change.before, forward ? change.afterSummary : change.beforeSummary);
      if (this.formNode === change.id) this.showForm(change.id, { reload: true });
    }
  };

  Editor.prototype.perform = function (changes, forward) {
    var list = forward ? changes : changes.slice().reverse();
    this.applying = true;
    try { for (var i = 0; i < list.length; i++) this.run(list[i], forward); } finally { this.applying = false; }
  };

  // Record changes that already happened (a drag, a connection) or `apply` them first.
  Editor.prototype.record = function (label, changes, options) {
    options = options || {};
    if (!changes.length || this.loading) return;
    if (options.apply) this.perform(changes, true);
    var top = this.done[this.done.length - 1];
    var now = Date.now();
    if (options.key && top && top.key === options.key && !this.undone.length) {
      top.changes[0].after = changes[0].after; // typing in one form: one step
      top.changes[0].afterSummary = changes[0].afterSummary;
      top.at = now;
    } else {
      this.done.push({ label: label, changes: changes, at: now, key: options.key || null, seq: ++this.seq });
      if (this.done.length > HISTORY_LIMIT) this.done.shift();
    }
    this.undone = [];
    this.afterChange();
  };

  Editor.prototype.undo = function () {
    var self = this;
    return this.flushForm().then(function () {
      var rec = self.done.pop();
      if (!rec) return false;
      self.perform(rec.changes, false);
      self.undone.push(rec);
      self.afterChange();
      self.setStatus("Undid: " + rec.label, "warn");
      return true;
    });
  };

  Editor.prototype.redo = function () {
    var self = this;
    return this.flushForm().then(function () {
      var rec = self.undone.pop();
      if (!rec) return false;
      self.perform(rec.changes, true);
      self.done.push(rec);
      self.afterChange();
      self.setStatus("Redid: " + rec.label, "warn");
      return true;
    });
  };

  Editor.prototype.afterChange = function () {
    this.showErrors(this.errors);
    this.paintSelection();
    this.refreshDirty();
  };

  Editor.prototype.refreshUndoButtons = function () {
    var u = this.root.querySelector('[data-editor-action="undo"]'), r = this.root.querySelector('[data-editor-action="redo"]');
    if (u) { u.disabled = !this.done.length; u.title = this.done.length ? "Undo " + this.done[this.done.length - 1].label + " (Ctrl+Z)" : "Nothing to undo"; }
    if (r) { r.disabled = !this.undone.length; r.title = this.undone.length ? "Redo " + this.undone[this.undone.length - 1].label + " (Ctrl+Shift+Z)" : "Nothing to redo"; }
  };

  // ---------- user actions ----------

  Editor.prototype.addNode = function (type, x, y) {
    var t = this.types[type];
    if (!t) return null;
    var node = { id: this.newId(), type: type, config: clone(t.defaults || {}), summary: t.summary || "", position: { x: Math.round(x), y: Math.round(y) } };
    this.record("add " + t.label, [{ op: "add", node: node }], { apply: true });
    this.setSelection([node.id]);
    return node.id;
  };

  Editor.prototype.connect = function (fromId, toId, port) {
    var edge = { from: fromId, to: toId };
    if (port != null) edge.port = port;
    this.record("connect", [{ op: "link", edge: edge }], { apply: true });
  };

  Editor.prototype.deleteNodes = function (ids) {
    var self = this;
    ids = ids.filter(function (id) { return id in self.configs; });
    if (!ids.length) return;
    var changes = this.edgesTouching(ids).map(function (e) { return { op: "unlink", edge: e }; });
    // Removing from the end keeps the other nodes' recorded indexes right when undo re-inserts them.
    ids.map(function (id) { return self.snapshotNode(id); })
      .sort(function (a, b) { return b.index - a.index; })
      .forEach(function (n) { changes.push({ op: "remove", node: n }); });
    this.record(ids.length > 1 ? "delete " + ids.length + " nodes" : "delete " + ids[0], changes, { apply: true });
  };

  Editor.prototype.deleteSelection = function () {
    if (this.selection.length) return this.deleteNodes(this.selection.slice());
    var c = this.df.connection_selected;
    if (!c) return;
    var cls = c.parentElement.classList;
    var edge = this.edgeOf({ output_id: cls[2].slice(14), input_id: cls[1].slice(13), output_class: cls[3], input_class: cls[4] });
    this.df.connection_selected = null;
    if (edge) this.record("disconnect", [{ op: "unlink", edge: edge }], { apply: true });
  };

  Editor.prototype.onConnect = function (c) {
    if (this.applying || this.loading) return;
    var edge = this.edgeOf(c);
    if (!edge) return;
    this.record("connect", [{ op: "link", edge: edge }]);
  };

  Editor.prototype.onDisconnect = function (c) {
    if (this.applying || this.loading) return;
    var edge = this.edgeOf(c);
    if (edge) this.record("disconnect", [{ op: "unlink", edge: edge }]);
  };

  // ---------- selection ----------

  // `stay` keeps the side panel's tab (a rollback from Versions reselects without leaving it).
  Editor.prototype.setSelection = function (ids, stay) {
    var seen = {};
    this.selection = ids.filter(function (id) { if (seen[id]) return false; seen[id] = true; return true; });
    this.paintSelection();
    this.showSelection(stay);
  };

  Editor.prototype.paintSelection = function () {
    var chosen = {}, self = this;
    this.selection.forEach(function (id) { chosen[self.flowToDf[id]] = true; });
    Array.prototype.forEach.call(this.canvas.querySelectorAll(".drawflow-node"), function (el) {
      el.classList.toggle("selected", !!chosen[el.id.slice(5)]);
    });
    // Drawflow's own idea of "the selected node" follows ours, so its drag moves what we show as selected.
    this.df.node_selected = this.selection.length === 1 ? this.nodeEl(this.selection[0]) : null;
  };

  // A mousedown anywhere on the canvas (Drawflow's "click" event fires before Drawflow handles it).
  Editor.prototype.onPointerDown = function (e) {
    var target = e.target;
    var nodeEl = target.closest && target.closest(".drawflow-node");
    this.dragStart = null;
    if (!nodeEl || target.classList.contains("output") || target.classList.contains("input")) {
      if (!nodeEl && !e.shiftKey && !(target.classList && target.classList.contains("main-path"))) this.setSelection([]);
      if (target.classList && target.classList.contains("main-path")) this.setSelection([]);
      return;
    }
    var id = this.dfToFlow[nodeEl.id.slice(5)];
    var additive = e.shiftKey || e.ctrlKey || e.metaKey;
    if (additive) {
      var without = this.selection.filter(function (s) { return s !== id; });
      this.setSelection(without.length === this.selection.length ? this.selection.concat([id]) : without);
    } else if (this.selection.indexOf(id) < 0) {
      this.setSelection([id]);
    } else if (this.selection.length === 1) {
      this.showSelection();
    }
    // Where every selected node starts, so a drag moves them together and records one step.
    var self = this, start = {};
    this.selection.forEach(function (s) { var n = self.dfData()[self.flowToDf[s]]; if (n) start[s] = { x: n.pos_x, y: n.pos_y }; });
    if (!start[id]) { var n = this.dfData()[this.flowToDf[id]]; start[id] = { x: n.pos_x, y: n.pos_y }; }
    this.dragStart = { lead: id, at: start };
  };

  // Drawflow stores a dragged node's position one mouse step ahead of where it draws it; the drawn one is right.
  Editor.prototype.syncPosition = function (flowId) {
    var n = this.dfData()[this.flowToDf[flowId]], el = this.nodeEl(flowId);
    if (!n || !el) return null;
    n.pos_x = parseFloat(el.style.left) || 0;
    n.pos_y = parseFloat(el.style.top) || 0;
    return n;
  };

  Editor.prototype.onDrag = function () {
    var d = this.dragStart;
    if (!d || !this.df.drag) return;
    var lead = this.syncPosition(d.lead);
    if (!lead) return;
    var dx = lead.pos_x - d.at[d.lead].x, dy = lead.pos_y - d.at[d.lead].y, self = this;
    Object.keys(d.at).forEach(function (id) {
      if (id !== d.lead) self.place(id, { x: d.at[id].x + dx, y: d.at[id].y + dy });
    });
  };

  Editor.prototype.onMoved = function () {
    var d = this.dragStart, self = this;
    this.dragStart = null;
    if (!d) return;
    this.syncPosition(d.lead);
    var changes = [];
    Object.keys(d.at).forEach(function (id) {
      var n = self.dfData()[self.flowToDf[id]];
      if (!n) return;
      var to = { x: Math.round(n.pos_x), y: Math.round(n.pos_y) };
      if (to.x !== Math.round(d.at[id].x) || to.y !== Math.round(d.at[id].y)) {
        changes.push({ op: "move", id: id, from: { x: Math.round(d.at[id].x), y: Math.round(d.at[id].y) }, to: to });
      }
    });
    this.record(changes.length > 1 ? "move " + changes.length + " nodes" : "move " + (changes[0] || {}).id, changes);
  };

  Editor.prototype.startBoxSelect = function (e) {
    if (!e.shiftKey || e.button !== 0) return;
    var t = e.target;
    if (!(t === this.canvas || (t.classList && t.classList.contains("drawflow")))) return;
    e.stopImmediatePropagation(); // Drawflow would pan
    e.preventDefault();
    var self = this, box = document.createElement("div"), wrap = this.canvas.getBoundingClientRect();
    box.className = "select-box";
    this.canvas.appendChild(box);
    var x0 = e.clientX, y0 = e.clientY;
    function draw(ev) {
      var l = Math.min(x0, ev.clientX), tp = Math.min(y0, ev.clientY);
      box.style.left = (l - wrap.left) + "px"; box.style.top = (tp - wrap.top) + "px";
      box.style.width = Math.abs(ev.clientX - x0) + "px"; box.style.height = Math.abs(ev.clientY - y0) + "px";
    }
    function done(ev) {
      document.removeEventListener("mousemove", draw, true);
      document.removeEventListener("mouseup", done, true);
      box.remove();
      var l = Math.min(x0, ev.clientX), r = Math.max(x0, ev.clientX), tp = Math.min(y0, ev.clientY), b = Math.max(y0, ev.clientY);
      var picked = self.order.filter(function (id) {
        var rc = self.nodeEl(id).getBoundingClientRect();
        return rc.left < r && rc.right > l && rc.top < b && rc.bottom > tp;
      });
      self.setSelection(self.selection.concat(picked));
    }
    document.addEventListener("mousemove", draw, true);
    document.addEventListener("mouseup", done, true);
  };

  // ---------- clipboard ----------

  // The selected nodes (configs and positions) and the edges between them.
  Editor.prototype.selectionClip = function () {
    if (!this.selection.length) return null;
    var self = this, ids = {};
    this.selection.forEach(function (id) { ids[id] = true; });
    return {
      schema: SCHEMA,
      nodes: this.order.filter(function (id) { return ids[id]; }).map(function (id) { var n = self.snapshotNode(id); delete n.index; return n; }),
      edges: this.edgesTouching(this.selection).filter(function (e) { return ids[e.from] && ids[e.to]; })
    };
  };

  Editor.prototype.copySelection = function () {
    var clip = this.selectionClip();
    if (!clip) return null;
    this.clipboard = clip;
    this.pasteCount = 0;
    // Kept in localStorage too, so nodes can be pasted into another flow's editor.
    try { window.localStorage.setItem(CLIPBOARD_KEY, JSON.stringify(clip)); } catch (err) { /* storage full or off: the in-page copy still works */ }
    this.setStatus("Copied " + clip.nodes.length + " node" + (clip.nodes.length > 1 ? "s" : ""), "ok");
    return clip;
  };

  Editor.prototype.readClipboard = function () {
    try {
      var stored = JSON.parse(window.localStorage.getItem(CLIPBOARD_KEY) || "null");
      if (stored && stored.schema === SCHEMA && Array.isArray(stored.nodes)) {
        if (!this.clipboard || !same(stored, this.clipboard)) { this.clipboard = stored; this.pasteCount = 0; }
      }
    } catch (err) { /* unreadable storage: use the in-page copy */ }
    return this.clipboard || null;
  };

  // Pasted nodes keep their configs and get fresh ids; edges between them come along.
  Editor.prototype.paste = function (clip, offsetSteps) {
    if (!clip) { clip = this.readClipboard(); this.pasteCount += 1; offsetSteps = this.pasteCount; }
    if (!clip || !clip.nodes.length) return [];
    var self = this, ids = {}, taken = [], offset = PASTE_OFFSET * (offsetSteps || 1);
    var changes = [];
    clip.nodes.forEach(function (n) {
      if (!self.types[n.type]) return;
      var id = self.newId(taken);
      taken.push(id);
      ids[n.id] = id;
      changes.push({ op: "add", node: { id: id, type: n.type, config: clone(n.config), summary: n.summary,
        position: { x: n.position.x + offset, y: n.position.y + offset } } });
    });
    clip.edges.forEach(function (e) {
      if (!ids[e.from] || !ids[e.to]) return;
      var edge = { from: ids[e.from], to: ids[e.to] };
      if (e.port != null) edge.port = e.port;
      changes.push({ op: "link", edge: edge });
    });
    this.record("paste " + taken.length + " node" + (taken.length > 1 ? "s" : ""), changes, { apply: true });
    this.setSelection(taken);
    return taken;
  };

  // Duplicate = paste a copy of the selection next to it, leaving the clipboard alone.
  Editor.prototype.duplicateSelection = function () {
    var clip = this.selectionClip();
    return clip ? this.paste(clip, 1) : [];
  };

  // ---------- view ----------

  // The box around every node, in canvas coordinates (null for an empty graph).
  Editor.prototype.bounds = function () {
    var data = this.dfData(), box = null;
    Array.prototype.forEach.call(this.canvas.querySelectorAll(".drawflow-node"), function (el) {
      var n = data[el.id.slice(5)];
      if (!n) return;
      var w = el.offsetWidth + 40, h = el.offsetHeight; // + room for port labels
      if (!box) box = { minX: n.pos_x, minY: n.pos_y, maxX: n.pos_x + w, maxY: n.pos_y + h };
      box.minX = Math.min(box.minX, n.pos_x); box.minY = Math.min(box.minY, n.pos_y);
      box.maxX = Math.max(box.maxX, n.pos_x + w); box.maxY = Math.max(box.maxY, n.pos_y + h);
    });
    return box;
  };

  Editor.prototype.setView = function (zoom, x, y) {
    var df = this.df;
    df.zoom = zoom;
    df.zoom_last_value = zoom;
    df.canvas_x = x;
    df.canvas_y = y;
    df.precanvas.style.transform = "translate(" + x + "px, " + y + "px) scale(" + zoom + ")";
  };

  // Zoom and pan so every node is in view (capped at 100%): example flows open whole, not half off-screen.
  // `onlyIfHidden` (on open) leaves a flow that is already fully visible where its author put it.
  var FIT_ZOOM_MIN = 0.1;

  Editor.prototype.fitView = function (onlyIfHidden) {
    var df = this.df, pc = df.precanvas, W = pc.clientWidth, H = pc.clientHeight, pad = 40;
    if (!W || !H) return;
    var box = this.bounds();
    if (!box) { this.setView(1, 0, 0); return; }
    if (onlyIfHidden && df.zoom === 1 && df.canvas_x === 0 && df.canvas_y === 0 &&
        box.minX >= 0 && box.minY >= 0 && box.maxX <= W && box.maxY <= H) return;
    var zoom = Math.min(1, (W - 2 * pad) / Math.max(1, box.maxX - box.minX), (H - 2 * pad) / Math.max(1, box.maxY - box.minY));
    // A phone may need less than the wheel's minimum zoom to show a flow whole; fitting may go below it.
    zoom = Math.max(Math.min(df.zoom_min, FIT_ZOOM_MIN), Math.floor(zoom * 100) / 100);
    // The canvas scales around its centre: translate so the graph's centre lands on the view's centre.
    var bx = (box.minX + box.maxX) / 2, by = (box.minY + box.maxY) / 2;
    this.setView(zoom, (W / 2 - bx) * zoom, (H / 2 - by) * zoom);
  };

  Editor.prototype.centerOn = function (flowId) {
    var n = this.dfData()[this.flowToDf[flowId]], el = this.nodeEl(flowId), df = this.df, pc = df.precanvas;
    if (!n || !el) return;
    var z = df.zoom, cx = n.pos_x + el.offsetWidth / 2, cy = n.pos_y + el.offsetHeight / 2;
    df.canvas_x = (pc.clientWidth / 2 - cx) * z;
    df.canvas_y = (pc.clientHeight / 2 - cy) * z;
    this.setView(z, df.canvas_x, df.canvas_y);
    el.classList.remove("is-flash");
    void el.offsetWidth; // restart the animation
    el.classList.add("is-flash");
  };

  // ---------- export ----------

  Editor.prototype.readMeta = function () {
    var get = function (id) { return document.getElementById(id); };
    if (get("flow-name")) this.meta.name = get("flow-name").value;
    if (get("flow-description")) this.meta.description = get("flow-description").value;
    if (get("flow-priority")) this.meta.priority = parseInt(get("flow-priority").value, 10) || 0;
  };

  Editor.prototype.fillMeta = function () {
    var set = function (id, v) { var el = document.getElementById(id); if (el) el.value = v; };
    set("flow-name", this.meta.name);
    set("flow-description", this.meta.description);
    set("flow-priority", this.meta.priority);
    var st = document.getElementById("flow-status");
    if (st) { st.textContent = this.meta.status; st.className = "badge status-" + this.meta.status; }
  };

  Editor.prototype.exportDocument = function () {
    this.readMeta();
    var data = this.dfData();
    var self = this;
    var nodes = [], edges = [], found = {};
    this.order.forEach(function (flowId) {
      var n = data[self.flowToDf[flowId]];
      if (!n) return;
      nodes.push({ id: flowId, type: n.name, config: clone(self.configs[flowId]) || {}, position: { x: Math.round(n.pos_x), y: Math.round(n.pos_y) } });
      var ports = self.ports(n.name);
      Object.keys(n.outputs).forEach(function (out) {
        var port = ports[parseInt(out.slice(7), 10) - 1];
        n.outputs[out].connections.forEach(function (c) {
          var to = self.dfToFlow[c.node];
          var edge = { from: flowId, to: to };
          if (port != null) edge.port = port;
          found[self.edgeKey(flowId, to, port)] = edge;
        });
      });
    });
    // Keep the loaded edge order so a save without edits writes the same document back.
    this.edgeOrder.forEach(function (k) { if (found[k]) { edges.push(found[k]); delete found[k]; } });
    Object.keys(found).forEach(function (k) { edges.push(found[k]); });
    this.edgeOrder = edges.map(function (e) { return self.edgeKey(e.from, e.to, e.port); });
    return {
      schema: this.meta.schema || SCHEMA, name: this.meta.name, description: this.meta.description,
      status: this.meta.status, priority: this.meta.priority, nodes: nodes, edges: edges
    };
  };

  // ---------- side panel: properties ----------

  Editor.prototype.variableNames = function () {
    var names = [], self = this;
    this.order.forEach(function (id) {
      var m = (self.configs[id] || {}).match;
      if (m && m.kind === "intent") (m.variables || []).forEach(function (v) { if (v.name) names.push(v.name); });
    });
    return names;
  };

  Editor.prototype.showSelection = function (stay) {
    if (!this.panel) return;
    if (this.selection.length === 1) { this.showForm(this.selection[0]); if (!stay) this.openTab("node"); return; }
    var self = this;
    this.flushForm().then(function () {
      self.formNode = null;
      if (!self.selection.length) {
        // Clicking the empty canvas (to pan) leaves the Try it or Versions tab open.
        self.panel.innerHTML = '<p class="muted">Select a node to edit its properties. Shift-click or Shift-drag selects several.</p>';
        return;
      }
      self.panel.innerHTML = '<div class="multi-select"><h2>' + self.selection.length + ' nodes selected</h2><p class="muted">' +
        self.selection.map(esc).join(", ") + '</p><div class="form-actions">' +
        '<button type="button" class="btn small" data-editor-action="copy">Copy</button>' +
        '<button type="button" class="btn small" data-editor-action="duplicate">Duplicate</button>' +
        '<button type="button" class="btn small danger" data-editor-action="delete">Delete</button></div></div>';
      if (!stay) self.openTab("node");
    });
  };

  // The server renders the node's form from the editor's current (maybe unsaved) config.
  Editor.prototype.showForm = function (flowId, options) {
    options = options || {};
    if (!options.reload && this.formNode === flowId && this.panel.querySelector("#node-form")) return;
    var self = this;
    this.flushForm().then(function () {
      if (!(flowId in self.configs)) return;
      self.formNode = flowId;
      self.formVisit = (self.formVisit || 0) + 1;
      var body = { node_id: flowId, type: self.typeOf(flowId), config: JSON.stringify(self.configs[flowId] || {}), variables: JSON.stringify(self.variableNames()) };
      var errs = self.errors.filter(function (e) { return e.node_id === flowId; });
      if (errs.length) body.errors = JSON.stringify(errs);
      if (window.htmx && self.formUrl) {
        window.htmx.ajax("POST", self.formUrl, { target: self.panel, swap: "innerHTML", values: body });
      } else {
        self.panel.innerHTML = '<p class="muted">' + esc(body.type) + " " + esc(flowId) + "</p>";
      }
    });
  };

  Editor.prototype.bindForms = function () {
    var self = this;
    if (!this.panel) return;
    var schedule = function (e) {
      var form = e.target.closest && e.target.closest("#node-form");
      if (!form) return;
      clearTimeout(self.applyTimer);
      form.dataset.pending = "1";
      self.applyTimer = setTimeout(function () { self.applyNow(); }, APPLY_DELAY_MS);
    };
    this.panel.addEventListener("input", schedule);
    this.panel.addEventListener("change", schedule);
    // Enter in a field applies at once instead of navigating away.
    this.panel.addEventListener("submit", function (e) {
      if (e.target.id !== "node-form") return;
      e.preventDefault();
      self.applyNow();
    });
    document.body.addEventListener("htmx:beforeRequest", function (e) {
      if (e.target.id === "node-form") e.target.dataset.inflight = "1";
    });
    document.body.addEventListener("htmx:afterRequest", function (e) {
      if (e.target.id !== "node-form") return;
      delete e.target.dataset.inflight;
      var waiting = self.formWaiters || [];
      self.formWaiters = [];
      waiting.forEach(function (resolve) { resolve(); });
    });
    // An applied form is never swapped: the fields keep focus and what was typed since; only its messages change.
    document.body.addEventListener("htmx:beforeSwap", function (e) {
      var form = e.detail.elt;
      if (!form || form.id !== "node-form") return;
      e.detail.shouldSwap = false;
      self.mergeFormMessages(form, e.detail.serverResponse || "");
    });
    document.body.addEventListener("sb:node-config", function (e) {
      var d = e.detail || {};
      if (d.node_id) self.applyConfig(d.node_id, d.config || {}, d.errors || [], d.summary);
    });
  };

  Editor.prototype.applyNow = function () {
    clearTimeout(this.applyTimer);
    var form = this.panel && this.panel.querySelector("#node-form");
    if (!form || !form.dataset.pending) return;
    delete form.dataset.pending;
    if (window.htmx) window.htmx.trigger(form, "sb:apply");
  };

  // Resolves once the open form's last edit has reached the node (before the panel shows another node).
  Editor.prototype.flushForm = function () {
    var self = this;
    this.applyNow();
    var form = this.panel && this.panel.querySelector("#node-form");
    if (!form || !form.dataset.inflight) return Promise.resolve();
    return new Promise(function (resolve) {
      (self.formWaiters = self.formWaiters || []).push(resolve);
      setTimeout(resolve, 5000); // a lost response must not freeze the editor; the form's own error shows
    });
  };

  Editor.prototype.mergeFormMessages = function (form, html) {
    var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("node-form");
    if (!fresh) return;
    var oldFields = form.querySelectorAll(".field"), newFields = fresh.querySelectorAll(".field");
    if (oldFields.length === newFields.length) {
      Array.prototype.forEach.call(oldFields, function (field, i) {
        var nw = newFields[i];
        field.classList.toggle("has-error", nw.classList.contains("has-error"));
        Array.prototype.forEach.call(field.querySelectorAll(":scope > .field-error"), function (el) { el.remove(); });
        Array.prototype.forEach.call(nw.querySelectorAll(":scope > .field-error"), function (el) { field.appendChild(document.importNode(el, true)); });
      });
    }
    // Regions the server keeps current (errors summary, status, threshold advice) are marked data-live.
    Array.prototype.forEach.call(fresh.querySelectorAll("[data-live][id]"), function (theirs) {
      var mine = form.querySelector("#" + theirs.id);
      if (mine) mine.innerHTML = theirs.innerHTML;
    });
  };

  // The server answers an applied form with HX-Trigger {"sb:node-config": {node_id, config, summary, errors}}.
  Editor.prototype.applyConfig = function (flowId, config, errors, summary) {
    if (!(flowId in this.configs)) return;
    var before = this.configs[flowId], beforeSummary = this.summaries[flowId] || "";
    this.errors = this.errors.filter(function (e) { return e.node_id !== flowId; }).concat(
      (errors || []).map(function (e) { return { node_id: flowId, field: e.field || null, message: e.message }; }));
    if (same(before, config)) { this.showErrors(this.errors); return; }
    this.setConfig(flowId, config, summary);
    // Typing into one field while the form stays open is one undo step; another field or another visit is the next.
    var changed = Object.keys(Object.assign({}, before, config)).filter(function (k) { return !same(before[k], config[k]); }).sort();
    this.record("edit " + flowId, [{ op: "config", id: flowId, before: clone(before), after: clone(config),
      beforeSummary: beforeSummary, afterSummary: this.summaries[flowId] }],
      { key: ["config", flowId, this.formVisit, changed.join(",")].join(":") });
  };

  // ---------- errors ----------

  Editor.prototype.clearNodeErrors = function (flowId) {
    this.showErrors(this.errors.filter(function (e) { return e.node_id !== flowId; }));
  };

  Editor.prototype.showErrors = function (errors) {
    var self = this;
    this.errors = errors || [];
    Array.prototype.forEach.call(this.canvas.querySelectorAll(".drawflow-node.has-error"), function (el) {
      el.classList.remove("has-error");
      var b = el.querySelector(".sb-node-badge"); if (b) { b.hidden = true; b.textContent = ""; }
    });
    var byNode = {};
    this.errors.forEach(function (e) { if (e.node_id && self.flowToDf[e.node_id] !== undefined) (byNode[e.node_id] = byNode[e.node_id] || []).push(e); });
    Object.keys(byNode).forEach(function (id) {
      var el = self.nodeEl(id);
      if (!el) return;
      el.classList.add("has-error");
      var badge = el.querySelector(".sb-node-badge");
      badge.hidden = false;
      badge.textContent = byNode[id].map(function (e) { return e.message; }).join(" · ");
    });
    if (!this.errorList) return;
    if (!this.errors.length) { this.errorList.innerHTML = ""; this.errorList.hidden = true; return; }
    this.errorList.hidden = false;
    this.errorList.innerHTML = "<h3>" + this.errors.length + " problem" + (this.errors.length > 1 ? "s" : "") + "</h3><ul>" +
      this.errors.map(function (e) {
        var label = e.node_id && self.typeOf(e.node_id) ? (self.types[self.typeOf(e.node_id)] || {}).label : "";
        var where = e.node_id ? '<button type="button" class="link" data-select="' + esc(e.node_id) + '">' + esc(e.node_id) + (label ? " · " + esc(label) : "") + "</button>" : "Flow";
        return "<li>" + where + ": " + esc(e.message) + "</li>";
      }).join("") + "</ul>";
  };

  // ---------- Try it ----------

  Editor.prototype.bindTester = function () {
    var self = this;
    // The Try it panel tests the canvas as it is now, saved or not.
    document.body.addEventListener("htmx:configRequest", function (e) {
      if (e.detail.elt && e.detail.elt.id === "tester-form" && self.root.contains(e.detail.elt)) {
        e.detail.parameters.document = JSON.stringify(self.exportDocument());
      }
    });
    document.body.addEventListener("sb:tester-turn", function (e) {
      var d = e.detail || {};
      if (d.errors && d.errors.length) self.showErrors(d.errors);
      self.markRun(d.steps || []);
    });
    document.body.addEventListener("htmx:afterSwap", function (e) {
      if (e.target && e.target.id === "tester-panel") self.markRun([]);
    });
  };

  // Mark the nodes that ran in the last test turn, and the connections their ports took.
  Editor.prototype.markRun = function (steps) {
    var self = this;
    Array.prototype.forEach.call(this.canvas.querySelectorAll(".ran, .ran-error"), function (el) {
      el.classList.remove("ran", "ran-error");
      el.removeAttribute("data-run-step");
    });
    var mine = steps.filter(function (s) { return (s.flow_id === self.flowId || s.flow_id === "draft") && self.flowToDf[s.node_id] !== undefined; });
    var ran = {};
    mine.forEach(function (s, i) {
      ran[s.node_id] = s;
      var el = self.nodeEl(s.node_id);
      el.classList.add(s.error ? "ran-error" : "ran");
      el.setAttribute("data-run-step", String(i + 1));
    });
    mine.forEach(function (s) {
      var idx = self.ports(self.typeOf(s.node_id)).indexOf(s.port === undefined ? null : s.port);
      if (idx < 0) return;
      var from = self.flowToDf[s.node_id];
      Array.prototype.forEach.call(self.canvas.querySelectorAll(".connection.node_out_node-" + from + ".output_" + (idx + 1)), function (svg) {
        var to = self.dfToFlow[svg.classList[1].slice(13)];
        if (ran[to]) svg.classList.add("ran");
      });
      var port = self.nodeEl(s.node_id).querySelectorAll(".outputs .output")[idx];
      if (port && s.port) port.classList.add("ran");
    });
  };

  // ---------- server calls ----------

  Editor.prototype.request = function (method, path, body, extraHeaders) {
    var self = this;
    var headers = csrfHeaders();
    Object.keys(extraHeaders || {}).forEach(function (k) { headers[k] = extraHeaders[k]; });
    this.root.classList.add("is-busy");
    return fetch(path.charAt(0) === "/" && path.indexOf("/api/") === 0 ? path : this.apiBase + path, {
      method: method, headers: headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (resp) {
      return resp.text().then(function (text) {
        var json = null;
        try { json = text ? JSON.parse(text) : null; } catch (err) { json = { detail: text }; }
        return { ok: resp.ok, status: resp.status, json: json };
      });
    }, function (err) {
      return { ok: false, status: 0, json: { error: "The server did not answer (" + err.message + "): check your connection and retry." } };
    }).finally(function () { self.root.classList.remove("is-busy"); });
  };

  // Accept our {errors:[...]} and Litestar's {detail, extra} error bodies alike.
  function errorsOf(result) {
    var j = result.json || {};
    if (Array.isArray(j.errors)) return j.errors;
    if (j.extra && Array.isArray(j.extra.errors)) return j.extra.errors;
    if (Array.isArray(j.extra)) return j.extra.map(function (x) { return { node_id: x.node_id || null, field: x.field || x.key || null, message: x.message || String(x) }; });
    var message = j.error || j.detail || ("Request failed with status " + result.status);
    if (result.status === 401) message = "Your session ended: log in again in another tab, then retry.";
    if (result.status === 412) message = "Someone saved this flow after you opened it: reload to see their version (your changes are lost on reload; copy what you need first).";
    return [{ node_id: null, field: null, message: message }];
  }

  function problems(n) {
    return n + " problem" + (n > 1 ? "s" : "");
  }

  Editor.prototype.validate = function () {
    var self = this;
    return this.flushForm().then(function () {
      self.setStatus("Validating…", "busy");
      // Validate what is on the canvas now, not the saved draft.
      return self.request("POST", self.validateUrl || "/validate", self.exportDocument());
    }).then(function (r) {
      var errs = r.ok ? (r.json && r.json.errors) || [] : errorsOf(r);
      self.showErrors(errs);
      self.setStatus(errs.length ? problems(errs.length) : "No problems found", errs.length ? "error" : "ok");
      self.openTab("node");
      return errs;
    });
  };

  Editor.prototype.save = function () {
    var self = this, savedAt, sent;
    return this.flushForm().then(function () {
      self.setStatus("Saving…", "busy");
      savedAt = self.done.length ? self.done[self.done.length - 1].seq : 0;
      sent = self.exportDocument();
      return self.request("PUT", "", sent, self.revision ? { "If-Match": String(self.revision) } : {});
    }).then(function (r) {
      if (!r.ok) { self.showErrors(errorsOf(r)); self.setStatus("Not saved", "error"); self.openTab("node"); return false; }
      self.adopt(r.json, sent);
      self.savedSeq = savedAt;
      self.metaDirty = false;
      // A draft may be saved with problems: they stay on their nodes until fixed; only Publish needs none.
      var errs = (r.json && (r.json.errors || r.json.draft_errors)) || [];
      self.showErrors(errs);
      self.refreshDirty();
      if (!self.dirty) self.setStatus(errs.length ? "Draft saved · " + problems(errs.length) + " to fix before publishing" : "Draft saved", errs.length ? "warn" : "ok");
      return true;
    });
  };

  Editor.prototype.publish = function () {
    var self = this;
    return this.flushForm().then(function () {
      return self.dirty ? self.save() : true;
    }).then(function (saved) {
      if (!saved) return false;
      self.setStatus("Publishing…", "busy");
      return self.request("POST", "/publish", {}).then(function (r) {
        if (!r.ok) { self.showErrors(errorsOf(r)); self.setStatus("Not published: fix the problems first", "error"); self.openTab("node"); return false; }
        var v = r.json && (r.json.active_version || r.json.version);
        self.adopt(r.json);
        self.meta.status = (r.json && r.json.status) || "active";
        self.fillMeta();
        self.showErrors([]);
        self.setStatus(v ? "Published version " + v : "Published", "ok");
        self.refreshVersions();
        return true;
      });
    });
  };

  // After a save the server holds secret references instead of clear secrets, and a new draft revision.
  // The saved document is the truth: configs come back normalised (defaults filled in) and secrets as references.
  // A node edited while the save was on its way keeps the newer edit (`sent` holds what was sent).
  Editor.prototype.adopt = function (flow, sent) {
    if (!flow) return;
    if (flow.draft_revision !== undefined) this.revision = String(flow.draft_revision);
    var self = this, sentConfigs = {};
    ((sent && sent.nodes) || []).forEach(function (n) { sentConfigs[n.id] = n.config; });
    ((flow.document && flow.document.nodes) || []).forEach(function (n) {
      if (!(n.id in self.configs) || (sent && !same(self.configs[n.id], sentConfigs[n.id]))) return;
      self.setConfig(n.id, n.config, flow.summaries && n.id in flow.summaries ? flow.summaries[n.id] : self.summaries[n.id]);
    });
  };

  // ---------- versions ----------

  Editor.prototype.refreshVersions = function () {
    var box = document.getElementById("versions");
    if (box && window.htmx && this.flowId && !this.root.querySelector("#panel-versions").hidden) {
      window.htmx.ajax("GET", "/flows/" + this.flowId + "/versions", { target: box, swap: "outerHTML" });
    }
  };

  // The server rolled the flow back: load what now runs, and reopen the form on it (not the discarded values).
  Editor.prototype.reloadFromServer = function (message) {
    var self = this;
    clearTimeout(this.applyTimer);
    var form = this.panel && this.panel.querySelector("#node-form");
    if (form) delete form.dataset.pending;
    return this.request("GET", "").then(function (d) {
      if (!d.ok || !d.json || !d.json.document) { self.setStatus("Could not reload the flow: reload the page", "error"); return false; }
      var keep = self.selection.slice();
      var doc = d.json.document;
      doc.status = d.json.status || doc.status;
      self.formNode = null;
      self.load(doc, d.json.summaries);
      self.adopt(d.json);
      self.showErrors(d.json.errors || []);
      self.setSelection(keep.filter(function (id) { return id in self.configs; }), true);
      self.setStatus(message, "ok");
      return true;
    });
  };

  // ---------- tabs ----------

  Editor.prototype.openTab = function (name) {
    var self = this;
    if (name !== "node") this.applyNow();
    Array.prototype.forEach.call(this.root.querySelectorAll("[data-side-tab]"), function (tab) {
      var on = tab.getAttribute("data-side-tab") === name;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      var panel = self.root.querySelector("#" + tab.getAttribute("aria-controls"));
      if (panel) panel.hidden = !on;
    });
    if (name === "try") { var msg = this.root.querySelector("#tester-message"); if (msg) msg.focus(); }
  };

  // ---------- wiring ----------

  Editor.prototype.bindToolbar = function () {
    var self = this;
    this.root.addEventListener("click", function (e) {
      var tab = e.target.closest && e.target.closest("[data-side-tab]");
      if (tab) return self.openTab(tab.getAttribute("data-side-tab"));
      var btn = e.target.closest && e.target.closest("[data-editor-action],[data-goto],[data-select]");
      if (!btn) return;
      if (btn.hasAttribute("data-select")) { self.setSelection([btn.getAttribute("data-select")]); return self.centerOn(btn.getAttribute("data-select")); }
      if (btn.hasAttribute("data-goto")) return self.centerOn(btn.getAttribute("data-goto"));
      var action = btn.getAttribute("data-editor-action");
      var df = self.df;
      var actions = {
        validate: function () { self.validate(); },
        save: function () { self.save(); },
        publish: function () { self.publish(); },
        undo: function () { self.undo(); },
        redo: function () { self.redo(); },
        copy: function () { self.copySelection(); },
        duplicate: function () { self.duplicateSelection(); },
        fit: function () { self.fitView(); },
        "zoom-in": function () { df.zoom_in(); },
        "zoom-out": function () { df.zoom_out(); },
        "zoom-reset": function () { df.zoom_reset(); },
        "delete": function () { self.deleteSelection(); }
      };
      if (actions[action]) actions[action]();
    });
    ["flow-name", "flow-description", "flow-priority"].forEach(function (id) {
      var el = document.getElementById(id);
      if (el) el.addEventListener("input", function () { self.metaDirty = true; self.refreshDirty(); });
    });
    // Versions: a rollback asks first when it would discard unsaved changes, then reloads graph and form.
    document.body.addEventListener("htmx:confirm", function (e) {
      if (!e.target.closest || !e.target.closest("[data-rollback-form]") || !self.dirty) return;
      e.preventDefault();
      if (window.confirm("Rolling back discards your unsaved changes. Continue?")) e.detail.issueRequest(true);
    });
    document.body.addEventListener("sb:rolled-back", function (e) {
      var v = e.detail && e.detail.version;
      self.reloadFromServer(v ? "Rolled back to version " + v + ": it runs now" : "Rolled back");
    });
  };

  Editor.prototype.bindKeys = function () {
    var self = this;
    document.addEventListener("keydown", function (e) {
      var mod = e.ctrlKey || e.metaKey, key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
      if (mod && key === "s") { e.preventDefault(); self.save(); return; }
      if (isTyping(e.target) || e.defaultPrevented) return;
      if (!self.root.contains(e.target) && e.target !== document.body) return;
      var handled = true;
      if (mod && key === "z" && !e.shiftKey) self.undo();
      else if (mod && (key === "y" || (key === "z" && e.shiftKey))) self.redo();
      else if (mod && (key === "c" || key === "x") && String(window.getSelection()).trim()) handled = false; // copying page text
      else if (mod && key === "c") self.copySelection();
      else if (mod && key === "x") { if (self.copySelection()) self.deleteSelection(); }
      else if (mod && key === "v") self.paste();
      else if (mod && key === "d") self.duplicateSelection();
      else if (mod && key === "a") self.setSelection(self.order.slice());
      else if (!mod && (key === "Delete" || key === "Backspace")) self.deleteSelection();
      else if (!mod && key === "Escape") self.setSelection([]);
      else if (!mod && !e.altKey && key === "f") self.fitView();
      else handled = false;
      if (handled) e.preventDefault();
    });
  };

  Editor.prototype.bindWindow = function () {
    var self = this;
    window.addEventListener("beforeunload", function (e) {
      if (!self.dirty) return;
      e.preventDefault();
      e.returnValue = "";
    });
  };

  window.SwitchboardEditor = Editor;

  function boot() {
    var root = document.getElementById("flow-editor");
    if (!root || window.sbEditor) return;
    window.sbEditor = new Editor(root);
    // A DOM mark of readiness: tests and tools wait on it without evaluating script (the CSP forbids eval).
    root.dataset.ready = "true";
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
