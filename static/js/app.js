/* Switchboard page behaviour shared by every page: CSRF on htmx requests, editable lists, template-name chips. */
(function () {
  "use strict";

  function meta(name) {
    var el = document.querySelector('meta[name="' + name + '"]');
    return el ? el.content : "";
  }

  // Every htmx request carries the CSRF token, whatever element started it.
  document.addEventListener("htmx:configRequest", function (e) {
    var token = meta("csrf-token");
    if (token) e.detail.headers[meta("csrf-header") || "X-CSRF-Token"] = token;
  });

  function showFlash(text) {
    var box = document.getElementById("flash");
    if (!box) return;
    box.textContent = text;
    box.hidden = !text;
  }

  // The reason in a refused htmx request's body: the UI's plain-text line, or the API's {"error": ...}.
  function reasonOf(xhr) {
    var body = (xhr.responseText || "").trim();
    var type = xhr.getResponseHeader("Content-Type") || "";
    if (type.indexOf("application/json") === 0) {
      try { var j = JSON.parse(body); return (j && (j.error || j.detail)) || ""; } catch (err) { return ""; }
    }
    if (type.indexOf("text/plain") === 0) return body.slice(0, 500);
    return "";
  }

  // Server errors still reach the user, with the server's reason, instead of a silently unchanged page.
  document.addEventListener("htmx:responseError", function (e) {
    var xhr = e.detail.xhr;
    if (!xhr) return;
    showFlash(reasonOf(xhr) || "Request failed (" + xhr.status + "): reload the page and try again.");
  });

  // No answer at all (network down, server stopped): say so, the click is not silently lost.
  document.addEventListener("htmx:sendError", function () {
    showFlash("The server did not answer: check your connection, then try again.");
  });

  // A new click or form clears the last notice (polling and custom events leave it).
  document.addEventListener("htmx:beforeRequest", function (e) {
    var cause = e.detail.requestConfig && e.detail.requestConfig.triggeringEvent;
    if (cause && cause.isTrusted) showFlash("");
  });

  // Server-side notices for htmx requests arrive as HX-Trigger {"sb:flash": "message"}.
  document.addEventListener("sb:flash", function (e) {
    var box = document.getElementById("flash");
    if (!box) return;
    box.textContent = typeof e.detail === "string" ? e.detail : (e.detail && e.detail.value) || "";
    box.hidden = !box.textContent;
  });

  // Editable lists: a [data-list] container holds rows and a <template> for a new row.
  document.addEventListener("click", function (e) {
    var add = e.target.closest && e.target.closest("[data-list-add]");
    if (add) {
      var list = document.getElementById(add.getAttribute("data-list-add"));
      var tpl = list && list.querySelector("template");
      if (!tpl) return;
      var row = tpl.content.firstElementChild.cloneNode(true);
      list.insertBefore(row, tpl);
      var input = row.querySelector("input,textarea,select");
      if (input) input.focus();
      return;
    }
    var remove = e.target.closest && e.target.closest("[data-list-remove]");
    if (remove) {
      var r = remove.closest("[data-list-row]");
      var owner = r && r.closest("form");
      if (r) r.remove();
      // A removed row changes the form like typing does (the editor applies node forms on input).
      if (owner) owner.dispatchEvent(new Event("input", { bubbles: true }));
      return;
    }
    var chip = e.target.closest && e.target.closest("[data-insert]");
    if (chip) {
      var field = document.getElementById(chip.getAttribute("data-target"));
      if (!field) return;
      var text = "{{ " + chip.getAttribute("data-insert") + " }}";
      var start = field.selectionStart == null ? field.value.length : field.selectionStart;
      var end = field.selectionEnd == null ? start : field.selectionEnd;
      field.value = field.value.slice(0, start) + text + field.value.slice(end);
      field.focus();
      field.selectionStart = field.selectionEnd = start + text.length;
      field.dispatchEvent(new Event("input", { bubbles: true }));
    }
  });

  // Enter in a list row adds the next row instead of submitting the whole form.
  document.addEventListener("keydown", function (e) {
    if (e.key !== "Enter" || e.target.tagName !== "INPUT") return;
    var list = e.target.closest("[data-list]");
    if (!list) return;
    e.preventDefault();
    var btn = document.querySelector('[data-list-add="' + list.id + '"]');
    if (btn) btn.click();
  });

  // Show fields only for the chosen option: [data-show-when="select-id:value1,value2"].
  function refreshConditional(root) {
    Array.prototype.forEach.call((root || document).querySelectorAll("[data-show-when]"), function (el) {
      var spec = el.getAttribute("data-show-when").split(":");
      var src = document.getElementById(spec[0]);
      if (!src) return;
      var on = spec[1].split(",").indexOf(src.value) >= 0;
      el.hidden = !on;
      Array.prototype.forEach.call(el.querySelectorAll("input,select,textarea"), function (i) { i.disabled = !on; });
    });
  }
  document.addEventListener("change", function (e) { if (e.target.matches && e.target.matches("select")) refreshConditional(); });
  document.addEventListener("htmx:afterSettle", function (e) { refreshConditional(e.target); });
  document.addEventListener("DOMContentLoaded", function () { refreshConditional(); });

  // Filters that exclude each other: choosing one clears the others before the form is sent
  // (capture phase, so it runs before htmx reads the form): <select data-resets="id,id">.
  document.addEventListener("change", function (e) {
    var ids = e.target.getAttribute && e.target.getAttribute("data-resets");
    if (!ids) return;
    ids.split(",").forEach(function (id) {
      var other = document.getElementById(id.trim());
      if (other) other.value = "";
    });
  }, true);

  // On a phone the side navigation folds into the menu button.
  document.addEventListener("click", function (e) {
    var toggle = e.target.closest && e.target.closest(".nav-toggle");
    if (!toggle) return;
    var open = document.body.classList.toggle("nav-open");
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
  });

  // A live update (SSE) never replaces a card the agent is editing: typing in it (or being in one of its
  // fields) holds the card's updates until the agent's own save or reset swaps it.
  function liveCard(el) { return el && el.closest ? el.closest("[sse-swap]") : null; }
  document.addEventListener("input", function (e) {
    var card = liveCard(e.target);
    if (card) card.setAttribute("data-editing", "true");
  });
  document.addEventListener("htmx:sseBeforeMessage", function (e) {
    var card = e.target, active = document.activeElement;
    var typing = active && card.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName);
    // A save's own live echo shows what its answer already shows: skipped, so its "Saved" stays.
    var echo = card.hasAttribute("data-echo");
    card.removeAttribute("data-echo");
    if (card.hasAttribute("data-editing") || typing || echo) e.preventDefault();
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    var card = liveCard(e.target);
    if (!card || !e.detail.successful) return;
    card.removeAttribute("data-editing");
    // Only a change publishes an echo (a refused form, a 422, changes nothing).
    if (e.detail.xhr && e.detail.xhr.status < 300) card.setAttribute("data-echo", "true");
  });

  // Keep a live conversation scrolled to its newest message.
  document.addEventListener("htmx:sseMessage", function () {
    var log = document.getElementById("message-log");
    if (log) log.scrollTop = log.scrollHeight;
  });
})();
