/* Switchboard test conversations (tester page and the editor's Try it panel): send on Enter, keep the newest turn in view. */
(function () {
  "use strict";

  function panelOf(el) { return el && el.closest ? el.closest("#tester-panel") : null; }

  // Enter sends, Shift+Enter starts a new line: a chat, not a form.
  document.addEventListener("keydown", function (e) {
    if (e.key !== "Enter" || e.shiftKey || e.isComposing || e.target.id !== "tester-message") return;
    e.preventDefault();
    var form = e.target.form;
    if (form && e.target.value.trim()) form.requestSubmit();
  });

  // Calling webhooks for real is asked once per test conversation.
  document.addEventListener("htmx:confirm", function (e) {
    var form = e.target;
    if (!form || form.id !== "tester-form") return;
    var execute = form.querySelector("#tester-mode-execute");
    if (!execute || !execute.checked || form.dataset.executeConfirmed) return;
    e.preventDefault();
    if (window.confirm("For real: webhooks are called and the AI may use the LLM. Messages are not sent to any customer. Continue?")) {
      form.dataset.executeConfirmed = "1";
      e.detail.issueRequest(true);
    }
  });

  document.addEventListener("htmx:afterRequest", function (e) {
    var form = e.target;
    if (!form || form.id !== "tester-form") return;
    var panel = panelOf(form);
    var transcript = panel && panel.querySelector("#tester-transcript");
    if (transcript) transcript.scrollTop = transcript.scrollHeight;
    // Ids (scores, correction form) belong to the newest turn; older turns keep working through classes.
    if (transcript) {
      Array.prototype.forEach.call(transcript.querySelectorAll(".turn:not(:last-of-type) [id]"), function (el) {
        el.removeAttribute("id");
      });
    }
    var message = form.querySelector("#tester-message");
    if (e.detail.successful && message) message.value = "";
    if (message) message.focus();
    // The first dry run shows which sample it answered with: offer it for editing.
    var sample = form.querySelector("#tester-sample");
    var used = transcript && transcript.querySelector(".turn:last-of-type .turn-response[data-sample='true']");
    if (sample && used && !sample.value.trim()) sample.value = used.textContent;
  });
})();
