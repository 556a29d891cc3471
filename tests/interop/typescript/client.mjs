#!/usr/bin/env node
// Interop driver: the official MCP TypeScript SDK (@modelcontextprotocol/sdk, pinned in package-lock.json)
// against the real make-budget-mcp binary, over stdio or streamable HTTP.
//
//     node client.mjs CONFIG.json
//
// tests/integration/interop.rs writes CONFIG (see `Config` there). The driver lists the tools, calls every one of them
// with valid arguments in a workflow order (connect Make, sync, budgets, thresholds, webhooks, pause plans
// with four-eyes approval, ad-hoc pause/resume, audit, clean-up), reads the resources and prompts, and
// prints one line per step. Every tool result goes through the SDK's own output-schema validation
// (`Client.callTool` validates `structuredContent` against the `outputSchema` cached by `listTools`, with
// its default Ajv validator); a rejection, an unexpected tool error or a protocol error is a FAIL line
// naming the SDK, transport, step and the SDK's error text. The run continues after a rejection (with the
// raw result the SDK rejected) so one run shows every rejection. Exit status: 0 when nothing failed, 1
// otherwise, 2 on a bad invocation. Plain Node ESM, no build step.

import fs from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';

const sdkPackage = new URL('./node_modules/@modelcontextprotocol/sdk/package.json', import.meta.url);
const SDK = `typescript-sdk ${JSON.parse(fs.readFileSync(sdkPackage, 'utf8')).version}`;

// Every tool this driver calls. A tool the server lists that is not here fails the run, so a new tool
// cannot slip past the suite; a tool here that the server does not list fails it too.
const KNOWN_TOOLS = new Set([
  'whoami', 'connect_make', 'list_make_connections', 'remove_make_connection', 'sync_usage',
  'list_scenarios', 'get_scenario_usage', 'pause_scenarios', 'resume_scenarios', 'create_budget',
  'get_budget', 'list_budgets', 'update_budget', 'delete_budget', 'get_budget_status',
  'get_budget_chart', 'get_budget_history', 'forecast_spend', 'add_threshold', 'update_threshold',
  'remove_threshold', 'list_thresholds', 'add_threshold_action', 'remove_threshold_action',
  'list_threshold_actions', 'set_scenario_critical', 'preview_action', 'list_actions', 'get_action',
  'approve_action', 'reject_action', 'cancel_action', 'reverse_action', 'add_webhook', 'list_webhooks', 'remove_webhook',
  'query_audit_log', 'verify_audit_chain', 'create_audit_checkpoint',
]);

class Missing extends Error {}

function need(value, what) {
  if (value === undefined || value === null) throw new Missing(what);
  return value;
}

function field(obj, ...path) {
  for (const p of path) {
    if (obj === undefined || obj === null || typeof obj !== 'object') return undefined;
    obj = obj[p];
  }
  return obj ?? undefined;
}

const textOf = (result) => (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
const short = (v, n = 400) => {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s === undefined ? String(v) : s.length > n ? `${s.slice(0, n)}…` : s;
};

class Report {
  constructor(label) {
    this.label = label;
    this.passed = 0;
    this.failures = [];
    this.skipped = [];
    this.sdkLogs = [];
    this.attempted = new Set();
    this.accepted = new Map();
  }
  ok(what) {
    this.passed += 1;
    console.log(`ok    [${this.label}] ${what}`);
  }
  fail(what, why) {
    const line = `[${this.label}] ${what}: ${why}`;
    this.failures.push(line);
    console.log(`FAIL  ${line}`);
  }
  skip(what, why) {
    this.skipped.push(`${what} (${why})`);
    console.log(`skip  [${this.label}] ${what}: ${why}`);
  }
  note(what) {
    console.log(`note  [${this.label}] ${what}`);
  }
}

// A Client that remembers the raw tools/call result it received before `callTool` validates it, so the run
// can go on after a rejection, and the protocol version `initialize` agreed. `callTool` itself (and its
// validation) is the SDK's, unchanged.
class RememberingClient extends Client {
  async request(request, resultSchema, options) {
    const result = await super.request(request, resultSchema, options);
    if (request.method === 'tools/call') this.lastRaw = result;
    if (request.method === 'initialize') this.negotiated = result?.protocolVersion;
    return result;
  }
}

// Ajv's errorsText repeats one message per offending property ("data must NOT have additional properties,
// data must NOT have additional properties, …"): say it once, with the count.
function condensed(message) {
  const [, prefix = '', list = message] = message.match(/^(.*?: )(data.*)$/s) ?? [];
  const parts = list.split(', ');
  const counts = new Map();
  for (const p of parts) counts.set(p, (counts.get(p) ?? 0) + 1);
  return prefix + [...counts].map(([p, n]) => (n > 1 ? `${p} (×${n})` : p)).join(', ');
}

class Conn {
  constructor(run, client, transport, who) {
    Object.assign(this, { run, client, transport, who });
  }

  async listTools() {
    const tools = [];
    let cursor;
    do {
      const page = await this.client.listTools(cursor ? { cursor } : undefined);
      tools.push(...page.tools);
      cursor = page.nextCursor;
    } while (cursor);
    return tools;
  }

  async call(tool, args, expectError) {
    const r = this.run.report;
    const step = `tools/call ${tool}${this.who !== this.run.requesterName ? ` (as ${this.who})` : ''}`;
    this.client.lastRaw = undefined;
    r.attempted.add(tool);
    let result;
    try {
      result = await this.client.callTool({ name: tool, arguments: args });
    } catch (e) {
      const raw = this.client.lastRaw;
      if (raw !== undefined && e instanceof McpError) {
        // The call came back; the SDK threw while checking it against the tool's outputSchema.
        r.fail(step, `the SDK rejected the result: ${condensed(e.message)}`);
        return raw.structuredContent;
      }
      r.fail(step, `${e instanceof McpError ? 'protocol error' : e?.name ?? 'error'}: ${e?.message ?? e}`);
      return undefined;
    }
    if (expectError !== undefined) {
      const text = textOf(result);
      if (!result.isError) r.fail(step, `expected a tool error starting ${JSON.stringify(expectError)}, got success: ${short(text, 300)}`);
      else if (!text.startsWith(expectError)) r.fail(step, `expected a tool error starting ${JSON.stringify(expectError)}, got: ${short(text, 300)}`);
      else if (result.structuredContent !== undefined) r.fail(step, `a tool error must not carry structuredContent: ${short(result.structuredContent)}`);
      else {
        r.accepted.set(tool, (r.accepted.get(tool) ?? 0) + 1);
        r.ok(`${step}: expected tool error (isError, text content): ${short(text, 160)}`);
      }
      return undefined;
    }
    if (result.isError) {
      r.fail(step, `tool error: ${short(textOf(result), 500)}`);
      return undefined;
    }
    r.accepted.set(tool, (r.accepted.get(tool) ?? 0) + 1);
    r.ok(step);
    return result.structuredContent;
  }
}

class Run {
  constructor(config) {
    this.config = config;
    this.transport = config.transport;
    this.report = new Report(`${SDK}/${this.transport}`);
    this.requesterName = config.requester.subject;
  }

  async connect(principal) {
    const client = new RememberingClient({ name: 'make-budget-mcp-interop', version: '1.0.0' });
    let transport;
    if (principal.stdio) {
      const s = principal.stdio;
      transport = new StdioClientTransport({ command: s.command, args: s.args, env: s.env, stderr: 'pipe' });
      if (s.stderr_log) {
        const log = fs.createWriteStream(s.stderr_log, { flags: 'a' });
        // The stream exists once the transport has started (in connect below).
        const origStart = transport.start.bind(transport);
        transport.start = async () => {
          await origStart();
          transport.stderr?.pipe(log);
        };
      }
    } else {
      const h = principal.http;
      transport = new StreamableHTTPClientTransport(new URL(h.url), {
        requestInit: { headers: { Authorization: `Bearer ${h.token}` } },
      });
    }
    const conn = new Conn(this, client, transport, principal.subject);
    transport.onerror = (e) => {
      // Aborting the GET stream on close is reported as an error by the SDK; only other errors are news.
      if (!conn.closing) this.report.note(`transport error (${principal.subject}): ${e?.message ?? e}`);
    };
    await client.connect(transport);
    const info = client.getServerVersion();
    this.report.note(`connected as ${principal.subject}: protocol ${client.negotiated}, server ${info?.name} ${info?.version}`);
    return conn;
  }

  async close(conn) {
    conn.closing = true;
    if (conn.transport instanceof StreamableHTTPClientTransport && conn.transport.sessionId) {
      await this.step(`DELETE session (${conn.who})`, async () => {
        await conn.transport.terminateSession();
        this.report.ok(`DELETE session (${conn.who}): accepted by the SDK`);
      });
    }
    await conn.client.close();
  }

  async step(what, fn) {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof Missing) this.report.skip(what, `needs ${e.message} from an earlier step that failed`);
      else if (e instanceof McpError) this.report.fail(what, `protocol error ${e.code}: ${e.message}`);
      else this.report.fail(what, `${e?.name ?? 'error'}: ${e?.message ?? e}`);
      return undefined;
    }
  }

  async main() {
    const alice = await this.connect(this.config.requester);
    try {
      await this.scenario(alice);
    } finally {
      await this.close(alice);
    }
  }

  async scenario(alice) {
    const r = this.report;
    const cfg = this.config;
    const make = cfg.make;
    const org = cfg.organization_id;
    const team = cfg.team_id;
    const { top, other } = cfg.scenarios;

    // --- tools/list: every tool known, validation on ---------------------------------------------
    const tools = await this.step('tools/list', () => alice.listTools());
    if (!tools) return;
    const listed = new Set(tools.map((t) => t.name));
    r.note(`tools/list: ${listed.size} tools`);
    for (const name of [...listed].filter((n) => !KNOWN_TOOLS.has(n)).sort()) {
      r.fail('tools/list', `lists \`${name}\`, which this driver has no call for: add it to the interop drivers`);
    }
    for (const name of [...KNOWN_TOOLS].filter((n) => !listed.has(n)).sort()) {
      r.fail('tools/list', `does not list \`${name}\`, which the drivers expect`);
    }
    const noSchema = tools.filter((t) => !t.outputSchema).map((t) => t.name);
    if (noSchema.length) r.fail('tools/list', `tools without an outputSchema (nothing to validate): ${noSchema}`);
    await this.step('output-schema validation self-check', async () => {
      // The SDK's own validator for whoami, compiled by listTools, fed an empty object its schema forbids.
      const validator = alice.client.getToolOutputValidator('whoami');
      if (!validator) return r.fail('output-schema validation', 'the SDK holds no output validator for whoami: validation is off');
      const verdict = validator({});
      if (verdict.valid) return r.fail('output-schema validation', 'the SDK accepted {} for whoami: validation is off');
      r.ok(`output-schema validation is on (the SDK rejects {} for whoami: ${short(verdict.errorMessage, 100)})`);
    });

    // --- identity, Make link ---------------------------------------------------------------------
    const me = await alice.call('whoami', {});
    if (me && me.subject !== this.requesterName) r.fail('whoami', `subject ${me.subject}, expected ${this.requesterName}`);
    const conn = await alice.call('connect_make', {
      zone: make.zone, auth_kind: 'api_token', token: make.token, organization_ids: make.organization_ids,
      label: `interop ${r.label}`,
    });
    const connId = field(conn, 'id');
    await alice.call('list_make_connections', {});
    await alice.call('sync_usage', {});
    await alice.call('list_scenarios', { organization_id: org });
    await alice.call('get_scenario_usage', { scenario_id: top });

    // --- budgets ---------------------------------------------------------------------------------
    const budget = await alice.call('create_budget', {
      name: `interop ${r.label}`, description: 'created by the interop suite', unit: 'credits', limit: 40000,
      money: { currency: 'EUR', price_per_1000_units_minor: 900 }, period: { kind: 'monthly' }, timezone: 'UTC',
      scope: { organization_id: org, team_ids: [team] },
    });
    const budgetId = field(budget, 'id');
    await this.step('budget tools', async () => {
      const bid = need(budgetId, 'the budget id (create_budget)');
      const got = await alice.call('get_budget', { id: bid });
      await alice.call('list_budgets', {});
      const ver = need(field(got, 'version') ?? field(budget, 'version'), 'the budget version (get_budget)');
      await alice.call('update_budget', { id: bid, version: ver, description: 'updated by the interop suite' });
      await alice.call('get_budget_status', { id: bid });
      await alice.call('get_budget_chart', { id: bid });
      await alice.call('get_budget_history', { id: bid });
      await alice.call('forecast_spend', { id: bid, horizon_days: 7 });
    });

    // --- thresholds, webhooks, actions -----------------------------------------------------------
    const state = {};
    await this.step('threshold tools', async () => {
      const bid = need(budgetId, 'the budget id (create_budget)');
      // 1 credit actual: crossed at the next sync, so the pause actions below create plans.
      const t = await alice.call('add_threshold', {
        budget_id: bid, kind: 'absolute', value: 1, basis: 'actual', severity: 'warning', label: 'interop low threshold',
      });
      state.threshold = need(field(t, 'id'), 'the threshold id (add_threshold)');
      const tver = need(field(t, 'version'), 'the threshold version (add_threshold)');
      await alice.call('update_threshold', { id: state.threshold, version: tver, severity: 'critical' });
      await alice.call('list_thresholds', { budget_id: bid });
    });

    const hook = await alice.call('add_webhook', { url: cfg.webhook.url, secret: cfg.webhook.secret, label: 'interop' });
    const hookId = field(hook, 'id');
    await alice.call('list_webhooks', {});

    await this.step('threshold action tools', async () => {
      const tid = need(state.threshold, 'the threshold id (add_threshold)');
      state.actions = [];
      // Two pause actions on the one threshold: the crossing makes two plans, one to approve (and reverse),
      // one to reject.
      for (let i = 0; i < 2; i += 1) {
        const a = await alice.call('add_threshold_action', {
          threshold_id: tid, kind: 'pause_scenarios', selector: { kind: 'top_n', top_n: 1 }, mode: 'requires_approval',
        });
        state.actions.push(need(field(a, 'id'), 'the action id (add_threshold_action)'));
      }
      await alice.call('list_threshold_actions', { threshold_id: tid });
      await alice.call('preview_action', { action_id: state.actions[0] });
      await alice.call('set_scenario_critical', { scenario_id: other, critical: true });
    });

    await this.step('plan tools', async () => {
      const bid = need(budgetId, 'the budget id (create_budget)');
      const synced = await alice.call('sync_usage', {});
      if (synced && !(synced.threshold_crossings ?? []).length) {
        r.fail('sync_usage (second)', `the low threshold was not crossed: ${short(synced)}`);
      }
      const plans = await alice.call('list_actions', { budget_id: bid });
      const planIds = (field(plans, 'plans') ?? []).map((p) => p.id);
      if (plans && planIds.length !== 2) r.fail('list_actions', `expected 2 plans awaiting approval, got ${short(plans)}`);
      const approveId = need(planIds[0], 'a plan (list_actions)');
      const rejectId = need(planIds[1], 'a second plan (list_actions)');
      await alice.call('get_action', { plan_id: approveId });
      // Four eyes: the requester may not approve its own plan. A well-formed isError result.
      await alice.call('approve_action', { plan_id: approveId }, 'permission_denied:');
      const bob = await this.connect(cfg.approver);
      try {
        await bob.listTools(); // the SDK validates only tools whose outputSchema it cached from tools/list
        const who = await bob.call('whoami', {});
        if (who && who.subject !== cfg.approver.subject) r.fail('whoami (approver)', `subject ${who.subject}, expected ${cfg.approver.subject}`);
        const done = await bob.call('approve_action', { plan_id: approveId, reason: 'interop: approved' });
        if (done && done.state !== 'executed') r.fail('approve_action', `plan state ${done.state}, expected executed`);
      } finally {
        await this.close(bob);
      }
      const rejected = await alice.call('reject_action', { plan_id: rejectId, reason: 'interop: rejected' });
      if (rejected && rejected.state !== 'rejected') r.fail('reject_action', `plan state ${rejected.state}, expected rejected`);
      // Only a scheduled (delayed) plan can be cancelled: a rejected one is a conflict.
      await alice.call('cancel_action', { plan_id: rejectId, reason: 'interop: too late' }, 'conflict:');
      const back = await alice.call('reverse_action', { plan_id: approveId, reason: 'interop: reversed' });
      if (back && back.state !== 'reversed') r.fail('reverse_action', `plan state ${back.state}, expected reversed`);
    });

    await alice.call('pause_scenarios', { scenario_ids: [other], reason: 'interop: ad-hoc pause' });
    await alice.call('resume_scenarios', { scenario_ids: [other], reason: 'interop: ad-hoc resume' });

    // --- resources and prompts ---------------------------------------------------------------------
    await this.step('resources', async () => {
      const bid = need(budgetId, 'the budget id (create_budget)');
      const uri = `budget://${bid}`;
      const list = await alice.client.listResources();
      const uris = list.resources.map((x) => x.uri);
      if (!uris.includes(uri)) r.fail('resources/list', `${uri} not listed: ${uris}`);
      else r.ok(`resources/list (${uris.length} resources, ${uri} among them)`);
      const templates = await alice.client.listResourceTemplates();
      const names = templates.resourceTemplates.map((t) => t.uriTemplate);
      if (!names.includes('budget://{id}')) r.fail('resources/templates/list', `budget://{id} not listed: ${names}`);
      else r.ok(`resources/templates/list (${names})`);
      for (const u of [uri, 'audit://head']) {
        const read = await this.step(`resources/read ${u}`, () => alice.client.readResource({ uri: u }));
        if (!read) continue;
        try {
          JSON.parse(read.contents[0].text);
          r.ok(`resources/read ${u} (${read.contents[0].text.length} chars of JSON)`);
        } catch (e) {
          r.fail(`resources/read ${u}`, `expected one JSON text content, got ${short(read.contents, 300)} (${e.message})`);
        }
      }
    });

    await this.step('prompts', async () => {
      const bid = need(budgetId, 'the budget id (create_budget)');
      const list = await alice.client.listPrompts();
      r.ok(`prompts/list (${list.prompts.map((p) => p.name)})`);
      for (const p of list.prompts) {
        const args = {};
        for (const a of p.arguments ?? []) {
          if (a.name === 'budget_id') args[a.name] = bid;
          else if (a.required) r.fail(`prompts/get ${p.name}`, `the driver has no value for required argument ${a.name}`);
        }
        const got = await this.step(`prompts/get ${p.name}`, () => alice.client.getPrompt({ name: p.name, arguments: args }));
        if (got) {
          if (got.messages?.length) r.ok(`prompts/get ${p.name} (${got.messages.length} messages)`);
          else r.fail(`prompts/get ${p.name}`, 'no messages');
        }
      }
    });

    // --- audit -------------------------------------------------------------------------------------
    await alice.call('query_audit_log', { limit: 20 });
    const verified = await alice.call('verify_audit_chain', {});
    if (verified && verified.valid !== true) r.fail('verify_audit_chain', `chain not valid: ${short(verified)}`);
    await alice.call('create_audit_checkpoint', {});
    await alice.call('whoami', {});

    // --- clean-up ----------------------------------------------------------------------------------
    await this.step('clean-up of actions and thresholds', async () => {
      for (const aid of state.actions ?? []) await alice.call('remove_threshold_action', { action_id: aid });
      if (!state.actions?.length) throw new Missing('the action ids (add_threshold_action)');
      await alice.call('remove_threshold', { id: need(state.threshold, 'the threshold id') });
    });
    await this.step('clean-up of the webhook, budget and connection', async () => {
      await alice.call('remove_webhook', { webhook_id: need(hookId, 'the webhook id (add_webhook)') });
      await alice.call('delete_budget', { id: need(budgetId, 'the budget id (create_budget)') });
      await alice.call('remove_make_connection', { id: need(connId, 'the connection id (connect_make)') });
    });

    for (const name of [...listed].filter((n) => KNOWN_TOOLS.has(n)).sort()) {
      if (!r.attempted.has(name)) r.fail(`coverage of ${name}`, 'the driver never called this tool (an earlier step failed)');
    }
  }
}

async function main() {
  if (process.argv.length !== 3) {
    console.error('usage: node client.mjs CONFIG.json');
    return 2;
  }
  const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const run = new Run(config);
  const r = run.report;
  // What the SDK (and Ajv inside it) prints: kept and repeated in the summary.
  for (const level of ['warn', 'error']) {
    const orig = console[level].bind(console);
    console[level] = (...args) => {
      const text = args.map((a) => (typeof a === 'string' ? a : a?.message ?? JSON.stringify(a))).join(' ');
      // Ajv warns on every compile (each tools/list): kept, and printed once each in the summary.
      r.sdkLogs.push(`${level}: ${text}`);
    };
  }
  try {
    await run.main();
  } catch (e) {
    r.fail('run', `${e?.name ?? 'error'}: ${e?.message ?? e}\n${e?.stack ?? ''}`);
  }
  const distinct = [...new Set(r.sdkLogs)];
  console.log(`summary [${r.label}] ${r.passed} checks ok, ${r.failures.length} failures, ${r.skipped.length} steps skipped, ` +
    `${r.sdkLogs.length} SDK log lines (${distinct.length} distinct)`);
  for (const line of r.failures) console.log(`  FAIL ${line}`);
  for (const line of distinct) console.log(`  SDK LOG ${line}`);
  // An SDK warning (an unknown schema format, a failed session termination, …) means the server departs from
  // what the SDK expects: it fails the run like a rejection does.
  return r.failures.length || r.sdkLogs.length ? 1 : 0;
}

process.exitCode = await main();
