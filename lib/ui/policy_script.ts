/**
 * The Policy editor's script (served by the policy page at `<path>/policy/editor.js`; CSP
 * script-src 'self'). The page works without it (a "Check and preview" button posts the form);
 * with it, the draft is checked as you type:
 *
 * - 500 ms after the last keystroke the textarea's text is POSTed (urlencoded, with the CSRF
 *   token, like every form) to the `data-check-url`; the JSON answer carries the server-rendered
 *   result (problems at their lines, or the access preview) and, when the draft is valid, the
 *   `reviewed` digest the Save form needs. An older answer never overwrites a newer one.
 * - a problem's "line N" button moves the caret to that line and column.
 */
export const POLICY_JS = `"use strict";
(function () {
  var text = document.getElementById("policy-text");
  var form = document.getElementById("policy-form");
  var result = document.getElementById("policy-result");
  if (!text || !form || !result) return;
  var url = text.getAttribute("data-check-url");
  var status = document.getElementById("policy-status");
  var reviewed = form.querySelector("input[name=reviewed]");
  var csrf = form.querySelector("input[name=csrf]");
  var timer = null;
  var seq = 0;
  var inflight = null;

  function say(msg) { if (status) status.textContent = msg; }

  function show(markup) {
    var t = document.createElement("template");
    t.innerHTML = markup;
    result.replaceChildren(t.content);
  }

  function check() {
    var mine = ++seq;
    if (inflight) inflight.abort();
    inflight = window.AbortController ? new AbortController() : null;
    var body = new URLSearchParams();
    body.set("csrf", csrf ? csrf.value : "");
    body.set("policy", text.value);
    say("Checking…");
    fetch(url, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "accept": "application/json" },
      signal: inflight ? inflight.signal : undefined,
    }).then(function (r) {
      if (!r.ok) throw new Error("the server answered " + r.status);
      return r.json();
    }).then(function (answer) {
      if (mine !== seq) return;
      show(answer.html);
      text.setAttribute("aria-invalid", answer.ok ? "false" : "true");
      if (reviewed) reviewed.value = answer.ok ? answer.reviewed : "";
      say(answer.ok ? "Valid." : "Not valid: see the problems below.");
    }).catch(function (err) {
      if (err && err.name === "AbortError") return;
      if (mine === seq) say("Could not check: " + err.message);
    });
  }

  text.addEventListener("input", function () {
    // The digest belongs to the text it was computed for.
    if (reviewed) reviewed.value = "";
    seq++;
    say("Edited; checking soon…");
    clearTimeout(timer);
    timer = setTimeout(check, 500);
  });

  result.addEventListener("click", function (e) {
    var b = e.target.closest ? e.target.closest("button[data-line]") : null;
    if (!b) return;
    var line = Number(b.getAttribute("data-line"));
    var column = Number(b.getAttribute("data-column") || "1");
    var lines = text.value.split("\\n");
    var at = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) at += lines[i].length + 1;
    at += Math.max(0, Math.min(column - 1, (lines[line - 1] || "").length));
    text.focus();
    text.setSelectionRange(at, at);
    // Bring the line into view: roughly its share of the scroll height.
    text.scrollTop = Math.max(0, (line - 3) * (text.scrollHeight / Math.max(1, lines.length)));
  });
})();
`;
