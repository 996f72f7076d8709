/* Switchboard flow editor: renders a switchboard.flow/v1 document in Drawflow and exports it back. */
(function () {
  "use strict";

  var SCHEMA = "switchboard.flow/v1";
  var GROUPS = [["trigger", "Triggers"], ["logic", "Logic"], ["action", "Actions"]];

  function esc(text) {
    return String(text == null ? "" : text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function clone(value) {
    return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
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

  function Editor(root, options) {
    options = options || {};
    this.root = root;
    this.types = {};
    this.typeList = options.nodeTypes || readJson("node-types") || [];
    for (var i = 0; i < this.typeList.length; i++) this.types[this.typeList[i].type] = this.typeList[i];
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
    this.dirty = false;
    this.loading = false;
    this.selected = null;
    this.df = this.createDrawflow();
    this.buildPalette();
    this.bindToolbar();
    this.bindWindow();
    var doc = options.document || readJson("flow-document");
    if (doc) this.load(doc);
  }

  Editor.prototype.createDrawflow = function () {
    var self = this;
    var df = new window.Drawflow(this.canvas);
    df.reroute = false;
    df.zoom_min = 0.3;
    df.zoom_max = 1.6;
    // Drawflow listens for Delete on the whole document; typing in the properties panel must not delete nodes.
    var originalKey = df.key;
    df.key = function (event) {
      var t = event.target;
      if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) return;
      return originalKey.call(df, event);
    };
    df.start();
    df.on("nodeSelected", function (dfId) { self.select(self.dfToFlow[dfId]); });
    df.on("nodeUnselected", function () { self.select(null); });
    df.on("nodeRemoved", function (dfId) { self.forget(dfId); });
    df.on("nodeMoved", function () { self.touch(); });
    df.on("connectionCreated", function (c) { self.onConnect(c); });
    df.on("connectionRemoved", function () { self.touch(); });
    return df;
  };

  Editor.prototype.touch = function () {
    if (this.loading) return;
    this.dirty = true;
    this.setStatus("Unsaved changes", "warn");
  };

  Editor.prototype.setStatus = function (text, kind) {
    if (!this.status) return;
    this.status.textContent = text;
    this.status.className = "editor-status" + (kind ? " is-" + kind : "");
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
    var pc = this.df.precanvas;
    var rect = pc.getBoundingClientRect();
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
    this.df.import({ drawflow: { Home: { data: data } } });
    this.decoratePorts();
    this.showErrors([]);
    this.loading = false;
    this.dirty = false;
    this.setStatus("Saved", "ok");
    this.loadMs = window.performance ? performance.now() - started : 0;
  };

  // Drawflow draws bare circles; the port name makes success/failure and true/false visible.
  Editor.prototype.decoratePorts = function (onlyDfId) {
    var self = this;
    var nodes = onlyDfId ? [this.canvas.querySelector("#node-" + onlyDfId)] : this.canvas.querySelectorAll(".drawflow-node");
    Array.prototype.forEach.call(nodes, function (el) {
      if (!el) return;
      var ports = self.ports(self.df.drawflow.drawflow.Home.data[el.id.slice(5)].name);
      Array.prototype.forEach.call(el.querySelectorAll(".outputs .output"), function (o, i) {
        if (ports[i]) { o.setAttribute("data-port", ports[i]); o.setAttribute("title", ports[i]); }
      });
    });
  };

  Editor.prototype.edgeKey = function (from, to, port) {
    return from + "|" + to + "|" + (port == null ? "" : port);
  };

  Editor.prototype.newId = function () {
    var max = 0;
    this.order.forEach(function (id) { var m = /^n(\d+)$/.exec(id); if (m) max = Math.max(max, parseInt(m[1], 10)); });
    var id = "n" + (max + 1);
    while (this.configs[id]) id = "n" + (++max + 1);
    return id;
  };

  Editor.prototype.addNode = function (type, x, y) {
    var t = this.types[type];
    if (!t) return null;
    var flowId = this.newId();
    this.configs[flowId] = clone(t.defaults || {});
    this.summaries[flowId] = t.summary || "";
    this.order.push(flowId);
    var outputs = this.ports(type).length;
    var dfId = this.df.addNode(type, this.hasInput(type) ? 1 : 0, outputs, x, y, "sb-node group-" + t.group, { fid: flowId }, this.nodeHtml(flowId, type));
    this.dfToFlow[dfId] = flowId;
    this.flowToDf[flowId] = dfId;
    this.decoratePorts(dfId);
    this.touch();
    return flowId;
  };

  Editor.prototype.removeNode = function (flowId) {
    var dfId = this.flowToDf[flowId];
    if (dfId !== undefined) this.df.removeNodeId("node-" + dfId);
  };

  Editor.prototype.forget = function (dfId) {
    var flowId = this.dfToFlow[dfId];
    delete this.dfToFlow[dfId];
    delete this.flowToDf[flowId];
    delete this.configs[flowId];
    delete this.summaries[flowId];
    this.order = this.order.filter(function (id) { return id !== flowId; });
    if (this.selected === flowId) this.select(null);
    this.touch();
  };

  Editor.prototype.onConnect = function (c) {
    if (c.output_id === c.input_id) {
      this.df.removeSingleConnection(c.output_id, c.input_id, c.output_class, c.input_class);
      return;
    }
    this.touch();
  };

  Editor.prototype.connect = function (fromId, toId, port) {
    var from = this.flowToDf[fromId], to = this.flowToDf[toId];
    var ports = this.ports(this.df.drawflow.drawflow.Home.data[from].name);
    var idx = ports.indexOf(port === undefined ? null : port);
    this.df.addConnection(from, to, "output_" + (idx < 0 ? 1 : idx + 1), "input_1");
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
    var data = this.df.drawflow.drawflow.Home.data;
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

  // ---------- selection and properties ----------

  Editor.prototype.variableNames = function () {
    var names = [], data = this.df.drawflow.drawflow.Home.data, self = this;
    this.order.forEach(function (id) {
      var n = data[self.flowToDf[id]], m = (self.configs[id] || {}).match;
      if (n && m && m.kind === "intent") (m.variables || []).forEach(function (v) { if (v.name) names.push(v.name); });
    });
    return names;
  };

  Editor.prototype.select = function (flowId) {
    this.selected = flowId || null;
    if (!this.panel) return;
    if (!flowId) {
      this.panel.innerHTML = '<p class="muted">Select a node to edit its properties.</p>';
      return;
    }
    var type = this.df.drawflow.drawflow.Home.data[this.flowToDf[flowId]].name;
    var body = { node_id: flowId, type: type, config: JSON.stringify(this.configs[flowId] || {}), variables: JSON.stringify(this.variableNames()) };
    var errs = this.errors.filter(function (e) { return e.node_id === flowId; });
    if (errs.length) body.errors = JSON.stringify(errs);
    if (window.htmx && this.formUrl) {
      window.htmx.ajax("POST", this.formUrl, { target: this.panel, swap: "innerHTML", values: body });
    } else {
      this.panel.innerHTML = '<p class="muted">' + esc(type) + " " + esc(flowId) + "</p>";
    }
  };

  // The server answers a saved node form with HX-Trigger {"sb:node-config": {node_id, config}}.
  Editor.prototype.applyConfig = function (flowId, config, summary) {
    if (!(flowId in this.configs)) return;
    this.configs[flowId] = clone(config);
    this.summaries[flowId] = summary || "";
    var el = this.canvas.querySelector("#node-" + this.flowToDf[flowId] + " .sb-node-summary");
    if (el) el.textContent = this.summaries[flowId];
    this.clearNodeErrors(flowId);
    this.touch();
  };

  // ---------- errors ----------

  Editor.prototype.clearNodeErrors = function (flowId) {
    this.errors = this.errors.filter(function (e) { return e.node_id !== flowId; });
    this.showErrors(this.errors);
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
      var el = self.canvas.querySelector("#node-" + self.flowToDf[id]);
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
        var where = e.node_id ? '<button type="button" class="link" data-goto="' + esc(e.node_id) + '">' + esc(e.node_id) + "</button>" : "flow";
        return "<li>" + where + (e.field ? ' <code>' + esc(e.field) + "</code>" : "") + " " + esc(e.message) + "</li>";
      }).join("") + "</ul>";
  };

  Editor.prototype.focusNode = function (flowId) {
    var el = this.canvas.querySelector("#node-" + this.flowToDf[flowId]);
    if (!el) return;
    Array.prototype.forEach.call(this.canvas.querySelectorAll(".drawflow-node.selected"), function (n) { n.classList.remove("selected"); });
    el.classList.add("selected");
    this.df.node_selected = el;
    this.select(flowId);
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
    return [{ node_id: null, field: null, message: message }];
  }

  Editor.prototype.validate = function () {
    var self = this;
    this.setStatus("Validating…", "busy");
    // Validate what is on the canvas now, not the saved draft.
    return this.request("POST", this.validateUrl || "/validate", this.exportDocument()).then(function (r) {
      var errs = r.ok ? (r.json && r.json.errors) || [] : errorsOf(r);
      self.showErrors(errs);
      self.setStatus(errs.length ? errs.length + " problem(s)" : "No problems found", errs.length ? "error" : "ok");
      return errs;
    });
  };

  Editor.prototype.save = function () {
    var self = this;
    this.setStatus("Saving…", "busy");
    var doc = this.exportDocument();
    return this.request("PUT", "", doc, this.revision ? { "If-Match": String(this.revision) } : {}).then(function (r) {
      if (!r.ok) { self.showErrors(errorsOf(r)); self.setStatus("Not saved", "error"); return false; }
      self.adopt(r.json);
      self.dirty = false;
      // A draft saves in any state; its answer lists what Publish will need fixed
      // (`errors`: [{node_id, field, message, code}], also grouped as `node_errors`: {node id: [message]}).
      var errs = (r.json && r.json.errors) || [];
      self.showErrors(errs);
      self.setStatus(errs.length ? "Draft saved · " + errs.length + " problem(s) to fix before publishing" : "Draft saved", errs.length ? "warn" : "ok");
      return true;
    });
  };

  Editor.prototype.publish = function () {
    var self = this;
    var first = this.dirty ? this.save() : Promise.resolve(true);
    return first.then(function (saved) {
      if (!saved) return false;
      self.setStatus("Publishing…", "busy");
      return self.request("POST", "/publish", {}).then(function (r) {
        if (!r.ok) { self.showErrors(errorsOf(r)); self.setStatus("Not published", "error"); return false; }
        var v = r.json && (r.json.active_version || r.json.version);
        self.adopt(r.json);
        self.meta.status = (r.json && r.json.status) || "active";
        self.fillMeta();
        self.setStatus(v ? "Published version " + v : "Published", "ok");
        return true;
      });
    });
  };

  Editor.prototype.history = function () {
    var self = this;
    var box = this.root.querySelector("#history-panel");
    if (!box) return Promise.resolve();
    box.hidden = false;
    box.innerHTML = '<p class="muted">Loading versions…</p>';
    return this.request("GET", "/versions").then(function (r) {
      var list = r.json && (Array.isArray(r.json) ? r.json : r.json.versions || r.json.items) || [];
      if (!r.ok) { box.innerHTML = '<p class="error">' + esc(errorsOf(r)[0].message) + "</p>"; return; }
      if (!list.length) { box.innerHTML = '<p class="muted">No published versions yet.</p>'; return; }
      box.innerHTML = '<h3>Published versions</h3><table class="table compact" id="versions-table"><thead><tr><th>Version</th><th>Published</th><th>By</th><th></th></tr></thead><tbody>' +
        list.map(function (v) {
          var when = String(v.created_at || "").slice(0, 16).replace("T", " ");
          var action = v.active ? '<span class="badge status-active">running</span>'
            : '<button type="button" class="btn small" data-rollback="' + esc(v.version) + '">Roll back</button>';
          return '<tr data-version="' + esc(v.version) + '"><td>v' + esc(v.version) + "</td><td>" + esc(when) + "</td><td>" + esc(v.created_by || "") +
            "</td><td>" + action + "</td></tr>";
        }).join("") + "</tbody></table>";
    });
  };

  Editor.prototype.rollback = function (version) {
    var self = this;
    if (this.dirty && !window.confirm("Rolling back discards your unsaved changes. Continue?")) return Promise.resolve(false);
    this.setStatus("Rolling back…", "busy");
    return this.request("POST", "/rollback", { version: parseInt(version, 10) }).then(function (r) {
      if (!r.ok) { self.showErrors(errorsOf(r)); self.setStatus("Rollback failed", "error"); return false; }
      return self.request("GET", "").then(function (d) {
        if (d.ok && d.json && d.json.document) {
          var doc = d.json.document;
          doc.status = d.json.status || doc.status;
          self.load(doc, d.json.summaries);
          self.adopt(d.json);
        }
        self.setStatus("Rolled back to version " + version, "ok");
        self.history();
        return true;
      });
    });
  };

  // After a save the server holds secret references instead of clear secrets, and a new draft revision.
  Editor.prototype.adopt = function (flow) {
    if (!flow) return;
    if (flow.draft_revision !== undefined) this.revision = String(flow.draft_revision);
    var self = this;
    ((flow.document && flow.document.nodes) || []).forEach(function (n) {
      if (n.id in self.configs && n.type === "action.call_webhook") self.configs[n.id] = clone(n.config);
    });
  };

  // ---------- wiring ----------

  Editor.prototype.bindToolbar = function () {
    var self = this;
    this.root.addEventListener("click", function (e) {
      var btn = e.target.closest && e.target.closest("[data-editor-action],[data-goto],[data-rollback]");
      if (!btn) return;
      if (btn.hasAttribute("data-goto")) return self.focusNode(btn.getAttribute("data-goto"));
      if (btn.hasAttribute("data-rollback")) return self.rollback(btn.getAttribute("data-rollback"));
      var action = btn.getAttribute("data-editor-action");
      var df = self.df;
      var actions = {
        validate: function () { self.validate(); },
        save: function () { self.save(); },
        publish: function () { self.publish(); },
        history: function () { self.history(); },
        "zoom-in": function () { df.zoom_in(); },
        "zoom-out": function () { df.zoom_out(); },
        "zoom-reset": function () { df.zoom_reset(); },
        "delete": function () { if (self.selected) self.removeNode(self.selected); }
      };
      if (actions[action]) actions[action]();
    });
    ["flow-name", "flow-description", "flow-priority"].forEach(function (id) {
      var el = document.getElementById(id);
      if (el) el.addEventListener("input", function () { self.touch(); });
    });
    document.body.addEventListener("sb:node-config", function (e) {
      var d = e.detail || {};
      if (d.node_id) self.applyConfig(d.node_id, d.config || {}, d.summary);
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
    if (root && !window.sbEditor) window.sbEditor = new Editor(root);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
