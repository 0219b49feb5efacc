/**
 * The Policy page. Database mode: an editor checked as you type (POST /policy/check answers
 * JSON), a check-and-preview for browsers without script (POST /policy/review), and saving
 * (POST /policy/save) through the API's SetPolicy, audited, only for a draft whose preview was
 * shown over the policy in force. File mode: the policy read-only and where it comes from.
 * Every POST carries the CSRF token (checked by app.ts before these handlers run).
 */
import type { UiContext, UiDeps, UiPage } from "./context.ts";
import { securityHeaders, sendPlain } from "./http.ts";
import { checkDraft, type PolicyCheck, type PolicyGate, saveDraft } from "./policy_check.ts";
import { policyEditorView, policyFileView, policyResultView } from "./policy_view.ts";
import { POLICY_JS } from "./policy_script.ts";

/** The posted draft; a browser posts a textarea's line breaks as CRLF, the script as LF. */
function draftOf(ctx: UiContext): string {
  return (ctx.form.get("policy") ?? "").replace(/\r\n?/g, "\n");
}

export function policyPage(deps: UiDeps): UiPage {
  const gate: PolicyGate = {
    get: () => deps.policy.get(),
    preview: (text) => deps.policy.preview(text),
  };
  const databaseMode = () => deps.config.policy.mode === "database";

  async function editor(
    ctx: UiContext,
    draft: string | null,
    check: PolicyCheck | null,
    notice?: string,
  ) {
    const current = await deps.policy.get();
    if (!databaseMode()) {
      return ctx.render({
        title: "Policy",
        body: policyFileView({
          text: current.policy,
          path: deps.config.policy.path,
          updatedAt: current.updatedAt,
        }),
      });
    }
    ctx.render({
      title: "Policy",
      status: check && !check.ok ? 422 : 200,
      body: policyEditorView({
        draft: draft ?? current.policy,
        check,
        csrfField: ctx.csrfField(),
        checkUrl: ctx.href("/policy/check"),
        reviewUrl: ctx.href("/policy/review"),
        saveUrl: ctx.href("/policy/save"),
        scriptUrl: ctx.href("/policy/editor.js"),
        updatedAt: current.updatedAt,
        hasPolicy: current.policy.trim() !== "",
        notice,
      }),
    });
  }

  /** The POST routes edit; in file mode they are refused (the page offers no form there). */
  const editing = (fn: (ctx: UiContext) => Promise<void>) => async (ctx: UiContext) => {
    if (!databaseMode()) {
      return sendPlain(ctx.res, 409, "the policy comes from a file (policy.mode: file)\n");
    }
    await fn(ctx);
  };

  return {
    nav: { label: "Policy", path: "/policy", order: 50 },
    routes: [
      { method: "GET", path: "/policy", handler: (ctx) => editor(ctx, null, null) },
      {
        method: "GET",
        path: "/policy/editor.js",
        handler: (ctx) => {
          ctx.res.writeHead(200, {
            ...securityHeaders(),
            "content-type": "text/javascript; charset=utf-8",
            "cache-control": "no-cache",
          });
          ctx.res.end(ctx.req.method === "HEAD" ? undefined : POLICY_JS);
        },
      },
      {
        method: "POST",
        path: "/policy/check",
        handler: editing(async (ctx) => {
          const draft = draftOf(ctx);
          const check = await checkDraft(gate, draft);
          ctx.res.writeHead(200, {
            ...securityHeaders(),
            "content-type": "application/json; charset=utf-8",
            "cache-control": "no-store",
          });
          ctx.res.end(JSON.stringify({
            ...check,
            html: policyResultView(check, draft).value,
          }));
        }),
      },
      {
        method: "POST",
        path: "/policy/review",
        handler: editing(async (ctx) => {
          const draft = draftOf(ctx);
          await editor(ctx, draft, await checkDraft(gate, draft));
        }),
      },
      {
        method: "POST",
        path: "/policy/save",
        handler: editing(async (ctx) => {
          const draft = draftOf(ctx);
          const outcome = await saveDraft(
            gate,
            draft,
            ctx.form.get("reviewed") ?? "",
            async (text) => {
              const done = await ctx.perform(
                { action: "policy.set", target: "policy", details: { bytes: text.length } },
                () => deps.api.setPolicy({ policy: text }),
              );
              return done.ok ? null : done.error;
            },
          );
          if (outcome.saved) {
            return ctx.redirect("/policy", { kind: "ok", text: "Policy saved and in force." });
          }
          // A valid draft comes back unsaved when its preview was not shown for this exact text
          // over the policy in force (no script, edited since, or someone else saved).
          const notice = outcome.check.ok
            ? "Not saved yet: check who gains and who loses access below, then save again."
            : undefined;
          await editor(ctx, draft, outcome.check, notice);
        }),
      },
    ],
  };
}
