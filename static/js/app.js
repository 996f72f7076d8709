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

  // Server errors still reach the user instead of a silently unchanged page.
  document.addEventListener("htmx:responseError", function (e) {
    var xhr = e.detail.xhr;
    var box = document.getElementById("flash");
    if (!box || !xhr) return;
    var text = "Request failed (" + xhr.status + ").";
    try { var j = JSON.parse(xhr.responseText); if (j && j.detail) text = j.detail; } catch (err) { /* HTML body: keep the status line */ }
    box.textContent = text;
    box.hidden = false;
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

  // Keep a live conversation scrolled to its newest message.
  document.addEventListener("htmx:sseMessage", function () {
    var log = document.getElementById("message-log");
    if (log) log.scrollTop = log.scrollHeight;
  });
})();
