/**
 * The Policy page's markup: the editor (database mode), the read-only view (file mode), and
 * the result of a check — problems at their lines, or the preview of who gains and who loses
 * access. The editor's script inserts the same result markup, fetched from the check endpoint.
 */
import { type Html, html } from "./html.ts";
import type { PolicyCheck } from "./policy_check.ts";
import type { PolicyPreview, PreviewGroup } from "./policy_preview.ts";
import type { PolicyProblem } from "../policy/locate.ts";

export interface EditorOptions {
  draft: string;
  /** The result to show under the editor (after "Check and preview" or a refused save). */
  check: PolicyCheck | null;
  csrfField: Html;
  /** Where the script checks drafts, the no-script check, and saving. */
  checkUrl: string;
  reviewUrl: string;
  saveUrl: string;
  scriptUrl: string;
  updatedAt: Date | null;
  /** Whether a policy is in force (empty text: none, everyone reaches everyone). */
  hasPolicy: boolean;
  /** A sentence above the result, e.g. why a save did not happen yet. */
  notice?: string;
}

export function policyEditorView(o: EditorOptions): Html {
  const reviewed = o.check?.ok ? o.check.reviewed : "";
  // A textarea drops one leading newline of its content: add one so the draft keeps its own.
  const content = "\n" + o.draft;
  return html`${stateLine(o.hasPolicy, o.updatedAt, "database")}
<form id="policy-form" method="post" action="${o.saveUrl}" class="policy-editor">
${o.csrfField}
<input type="hidden" name="reviewed" value="${reviewed}">
<label for="policy-text">Policy (HuJSON: JSON with comments and trailing commas)</label>
<textarea id="policy-text" name="policy" rows="28" spellcheck="false" autocapitalize="off" autocomplete="off" wrap="off" aria-describedby="policy-status policy-result"${
    o.check && !o.check.ok
      ? html`
        aria-invalid="true"
      `
      : null
  } data-check-url="${o.checkUrl}">${content}</textarea>
<p id="policy-status" class="hint" role="status" aria-live="polite">Checked as you type with the server's own parser and the policy's tests; saving shows who gains and who loses access first.</p>
<div class="actions">
<button type="submit" formaction="${o.reviewUrl}">Check and preview</button>
<button type="submit" class="primary">Save</button>
</div>
</form>
${o.notice ? html`<p class="flash warn" role="status">${o.notice}</p>` : null}
<div id="policy-result">${o.check ? policyResultView(o.check, o.draft) : null}</div>
<script src="${o.scriptUrl}" defer></script>`;
}

export interface FileViewOptions {
  text: string;
  path: string;
  updatedAt: Date | null;
}

export function policyFileView(o: FileViewOptions): Html {
  if (o.path === "") {
    return html`<p>No policy file is configured (<code>policy.path</code> is empty), so every node may reach every other node.</p>
<p>Set <code>policy.path</code> to a HuJSON file, or set <code>policy.mode: database</code> to edit the policy here.</p>`;
  }
  return html`<p>This policy is read from <code>${o.path}</code> (<code>policy.mode: file</code>). Edits go in that file: the server reloads it when the file changes (and on SIGHUP); a policy that does not pass its checks is refused, logged, and the previous one stays in force.</p>
${stateLine(o.text.trim() !== "", o.updatedAt, "file")}
${
    o.text.trim() === ""
      ? html`<p>The file is empty: every node may reach every other node.</p>`
      : html`<pre class="policy-source" tabindex="0" aria-label="The policy file">${o.text}</pre>`
  }`;
}

function stateLine(hasPolicy: boolean, updatedAt: Date | null, mode: string): Html {
  if (!hasPolicy) {
    return html`<p class="hint">No policy is in force: every node may reach every other node.</p>`;
  }
  return html`<p class="hint">In force${
    updatedAt
      ? html`
        since <time datetime="${updatedAt.toISOString()}">${updatedAt.toISOString().replace(
          "T",
          " ",
        ).slice(0, 19)} UTC</time>
      `
      : null
  } (${mode === "file" ? "loaded from the file" : "stored in the database"}).</p>`;
}

export function policyResultView(check: PolicyCheck, draft: string): Html {
  return check.ok ? previewView(check.preview) : problemsView(check.problems, draft);
}

function problemsView(problems: readonly PolicyProblem[], draft: string): Html {
  const lines = draft.split("\n");
  return html`
    <section class="policy-problems" aria-labelledby="policy-problems-h">
      <h2 id="policy-problems-h">The policy is not valid</h2>
      <ul>${problems.map((p) =>
        html`<li>${
          p.line !== undefined
            ? html`
              <button type="button" class="link" data-line="${p.line}"
                data-column="${p.column ?? 1}">Line ${p.line}${p.column !== undefined
                  ? `, column ${p.column}`
                  : ""}</button>:
            `
            : null
        }${p.message}${
          p.line !== undefined && lines[p.line - 1] !== undefined
            ? html`<pre class="policy-line"><code>${excerpt(lines[p.line - 1])}</code></pre>`
            : null
        }</li>`
      )}</ul>
      <p>Nothing was saved; the policy in force stays.</p>
    </section>
  `;
}

function excerpt(line: string): string {
  const t = line.trim();
  return t.length > 160 ? t.slice(0, 157) + "…" : t;
}

function previewView(p: PolicyPreview): Html {
  const groups = (list: PreviewGroup[]) =>
    html`<dl class="policy-changes">${
      list.map((g) =>
        html`<dt>${g.source}</dt>${
          g.lines.map((l) =>
            html`<dd class="${l.kind}"><span aria-hidden="true">${
              l.kind === "gain" ? "+" : "−"
            }</span> ${l.text}</dd>`
          )
        }`
      )
    }</dl>`;
  return html`<section class="policy-preview" aria-labelledby="policy-preview-h">
<h2 id="policy-preview-h">Who gains and who loses access</h2>
<p>The draft is valid. ${p.summary}</p>
${p.access.length > 0 ? html`<h3>Network access</h3>${groups(p.access)}` : null}
${p.ssh.length > 0 ? html`<h3>Tailscale SSH</h3>${groups(p.ssh)}` : null}
${p.omitted > 0 ? html`<p>…and ${p.omitted} more not shown.</p>` : null}
</section>`;
}
