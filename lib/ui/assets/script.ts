/**
 * The admin UI's one script (served as `<path>/assets/<hash>/ui.js`; CSP script-src 'self'). The
 * pages work without it; it adds:
 *
 * - live updates: with `<body data-events="<url>">` it listens to the Server-Sent Events there.
 *   A `row` event (`{"target": "<tbody id>", "key": "<data-row-key>", "html": "<tr…>"}`)
 *   replaces the row with that `data-row-key` in that table body, or appends it; `{"remove":
 *   true}` instead removes it. The markup comes from the server's escaping templates. A
 *   `[data-counts]` line then shows the table's new row and online counts.
 * - copy buttons: `<button data-copy="<element id>">` copies that element's text.
 * - `<a data-autofollow>`: followed at once (after OIDC sign-in; see signin.ts).
 */
export const SCRIPT_JS = `"use strict";
(function () {
  function applyRow(msg) {
    var body = document.getElementById(msg.target);
    if (!body) return;
    var old = null;
    var rows = body.querySelectorAll("tr[data-row-key]");
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-row-key") === String(msg.key)) { old = rows[i]; break; }
    }
    if (msg.remove) { if (old) old.remove(); return; }
    var t = document.createElement("template");
    t.innerHTML = msg.html;
    var row = t.content.firstElementChild;
    if (!row) return;
    if (old) old.replaceWith(row); else body.appendChild(row);
    var empty = body.querySelector("tr[data-empty]");
    if (empty) empty.remove();
  }
  function recount(body) {
    var line = document.querySelector("[data-counts]");
    if (!body || !line) return;
    var rows = line.querySelector("[data-count=rows]");
    var online = line.querySelector("[data-count=online]");
    if (rows) rows.textContent = String(body.querySelectorAll("tr[data-row-key]").length);
    if (online) {
      online.textContent = String(body.querySelectorAll('td[data-online="true"]').length);
    }
  }
  var follow = document.querySelector("a[data-autofollow]");
  if (follow) window.location.replace(follow.href);
  var url = document.body.getAttribute("data-events");
  if (url && window.EventSource) {
    var source = new EventSource(url);
    source.addEventListener("row", function (e) {
      try {
        var msg = JSON.parse(e.data);
        applyRow(msg);
        recount(document.getElementById(msg.target));
      } catch (err) { console.error(err); }
    });
    var status = document.getElementById("live-status");
    source.addEventListener("open", function () { if (status) status.textContent = "live"; });
    source.addEventListener("error", function () {
      if (status) status.textContent = "reconnecting…";
    });
  }
  document.addEventListener("click", function (e) {
    var button = e.target.closest ? e.target.closest("button[data-copy]") : null;
    if (!button) return;
    var el = document.getElementById(button.getAttribute("data-copy"));
    if (!el) return;
    var text = el.textContent || "";
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {});
    } else {
      var range = document.createRange();
      range.selectNodeContents(el);
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      try { document.execCommand("copy"); done(); } catch (err) { /* selected for the user */ }
    }
  });
})();
`;
