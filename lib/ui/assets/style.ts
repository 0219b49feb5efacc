/**
 * The admin UI's one stylesheet, a string so `deno compile` carries it (served by assets.ts from
 * `<path>/assets/<hash>/ui.css`). System fonts, no images; light and dark by the system setting;
 * visible keyboard focus; tables scroll sideways on a phone instead of squeezing.
 */
export const STYLE_CSS = `
:root {
  --bg: #ffffff; --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --panel: #f6f8fa;
  --accent: #0a58ca; --accent-fg: #ffffff; --ok: #116329; --ok-bg: #dafbe1;
  --bad: #a40e26; --bad-bg: #ffebe9; --warn: #7d4e00; --warn-bg: #fff8c5; --focus: #0969da;
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0d1117; --fg: #e6edf3; --muted: #9da7b3; --line: #30363d; --panel: #161b22;
    --accent: #4493f8; --accent-fg: #0d1117; --ok: #56d364; --ok-bg: #0f2d1a;
    --bad: #ff7b72; --bad-bg: #3a1215; --warn: #e3b341; --warn-bg: #332701; --focus: #79c0ff;
  }
}
* { box-sizing: border-box; }
html { font-size: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 0.95rem/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
a { color: var(--accent); }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
.skip { position: absolute; left: -9999px; }
.skip:focus { left: 0.5rem; top: 0.5rem; background: var(--bg); padding: 0.5rem; z-index: 10; }
header.top {
  display: flex; flex-wrap: wrap; align-items: center; gap: 0.5rem 1.25rem;
  padding: 0.6rem 1rem; border-bottom: 1px solid var(--line); background: var(--panel);
}
header.top .brand { font-weight: 700; text-decoration: none; color: var(--fg); }
nav.main ul { display: flex; flex-wrap: wrap; gap: 0.25rem 0.9rem; margin: 0; padding: 0; list-style: none; }
nav.main a { text-decoration: none; padding: 0.2rem 0; border-bottom: 2px solid transparent; }
nav.main a[aria-current="page"] { border-bottom-color: var(--accent); font-weight: 600; }
header.top .who { margin-left: auto; display: flex; gap: 0.6rem; align-items: center; color: var(--muted); }
main { padding: 1rem; max-width: 88rem; margin: 0 auto; }
h1 { font-size: 1.4rem; margin: 0.2rem 0 1rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 0.6rem; }
.muted { color: var(--muted); }
.flash { padding: 0.6rem 0.8rem; border-radius: 6px; margin: 0 0 1rem; border: 1px solid var(--line); }
.flash.ok { background: var(--ok-bg); color: var(--ok); }
.flash.error { background: var(--bad-bg); color: var(--bad); }
.flash.warn { background: var(--warn-bg); color: var(--warn); }
.table-wrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; }
caption { text-align: left; padding: 0.5rem 0.6rem; color: var(--muted); }
th, td { text-align: left; vertical-align: top; padding: 0.45rem 0.6rem; border-top: 1px solid var(--line); }
thead th { border-top: 0; background: var(--panel); font-weight: 600; white-space: nowrap; }
td.nowrap, th.nowrap { white-space: nowrap; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.88em; }
.badge {
  display: inline-block; padding: 0 0.45rem; border-radius: 999px; font-size: 0.8em;
  border: 1px solid var(--line); white-space: nowrap;
}
[data-online="true"] .badge, .badge.ok { background: var(--ok-bg); color: var(--ok); border-color: var(--ok); }
[data-online="false"] .badge { color: var(--muted); }
.badge.bad { background: var(--bad-bg); color: var(--bad); border-color: var(--bad); }
.badge.warn { background: var(--warn-bg); color: var(--warn); border-color: var(--warn); }
form.inline { display: inline-flex; flex-wrap: wrap; gap: 0.35rem; align-items: center; margin: 0.15rem 0; }
form.stack { display: grid; gap: 0.7rem; max-width: 34rem; }
.field { display: grid; gap: 0.2rem; }
.check { display: flex; gap: 0.4rem; align-items: center; }
label { font-weight: 600; }
.check label { font-weight: 400; }
.hint { color: var(--muted); font-size: 0.85em; }
input[type="text"], input[type="search"], input[type="number"], input[type="datetime-local"],
input:not([type]), select, textarea {
  font: inherit; color: var(--fg); background: var(--bg); border: 1px solid var(--line);
  border-radius: 6px; padding: 0.35rem 0.5rem; min-height: 2.2rem; max-width: 100%;
}
textarea { width: 100%; }
button, .button {
  font: inherit; cursor: pointer; border-radius: 6px; padding: 0.35rem 0.8rem; min-height: 2.2rem;
  border: 1px solid var(--line); background: var(--panel); color: var(--fg); text-decoration: none;
  display: inline-flex; align-items: center;
}
button.primary, .button.primary { background: var(--accent); color: var(--accent-fg); border-color: var(--accent); }
button.danger { background: var(--bad-bg); color: var(--bad); border-color: var(--bad); }
details.actions > summary { cursor: pointer; color: var(--accent); }
details.actions[open] { padding: 0.4rem 0; }
.secret {
  display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center; padding: 0.6rem;
  border: 1px dashed var(--line); border-radius: 6px; background: var(--panel); margin: 0.5rem 0;
}
.secret code { word-break: break-all; }
.cards { display: grid; gap: 1rem; grid-template-columns: repeat(auto-fill, minmax(16rem, 1fr)); }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 0.8rem; background: var(--panel); }
img.avatar { width: 1.6rem; height: 1.6rem; border-radius: 50%; vertical-align: middle; margin-right: 0.35rem; }
.signin { max-width: 26rem; margin: 3rem auto; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.3rem 1rem; margin: 0; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
figure.chart { margin: 0; padding: 0.6rem; border: 1px solid var(--line); border-radius: 6px; }
figure.chart figcaption { margin-bottom: 0.3rem; }
svg.sparkline { display: block; color: var(--accent); max-width: 100%; height: auto; }
.policy-editor { display: grid; gap: 0.4rem; }
.policy-editor textarea {
  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.88em;
  tab-size: 2; min-height: 24rem; white-space: pre; overflow: auto;
}
.policy-editor textarea[aria-invalid="true"] { border-color: var(--bad); }
.actions { display: flex; flex-wrap: wrap; gap: 0.5rem; }
button.link {
  border: 0; background: none; padding: 0; min-height: 0; color: var(--accent);
  text-decoration: underline; display: inline;
}
.policy-problems { border: 1px solid var(--bad); background: var(--bad-bg); border-radius: 6px; padding: 0 0.8rem; margin-top: 1rem; }
.policy-problems li { margin: 0.4rem 0; }
pre.policy-line { margin: 0.2rem 0; white-space: pre-wrap; word-break: break-all; }
.policy-preview { border: 1px solid var(--line); border-radius: 6px; padding: 0 0.8rem 0.6rem; margin-top: 1rem; }
dl.policy-changes dt { font-weight: 600; margin-top: 0.5rem; }
dl.policy-changes dd { margin: 0.1rem 0 0 1rem; }
dl.policy-changes dd.gain { color: var(--ok); }
dl.policy-changes dd.loss { color: var(--bad); }
pre.policy-source {
  border: 1px solid var(--line); border-radius: 6px; background: var(--panel); padding: 0.6rem;
  overflow: auto; max-height: 40rem;
}
@media (max-width: 40rem) {
  header.top .who { margin-left: 0; width: 100%; }
  main { padding: 0.6rem; }
  th, td { padding: 0.4rem; }
}
`;
