#!/usr/bin/env python3
"""Interop driver: the official MCP Python SDK (PyPI `mcp`, pinned in requirements.txt) against the real
make-budget-mcp binary, over stdio or streamable HTTP.

    client.py CONFIG.json

tests/integration/interop.rs writes CONFIG (see `Config` there) and runs this with the venv's interpreter. The driver
lists the tools, calls every one of them with valid arguments in a workflow order (connect Make, sync,
budgets, thresholds, webhooks, pause plans with four-eyes approval, ad-hoc pause/resume, audit, clean-up),
reads the resources and prompts, and prints one line per step. Every tool result goes through the SDK's
own output-schema validation (`ClientSession.call_tool` -> `validate_tool_result`, on by default); a
rejection, an unexpected tool error or a protocol error is a FAIL line naming the SDK, transport, step and
the SDK's error text. The run continues after a rejection (with the raw result the SDK rejected) so one run
shows every rejection. Exit status: 0 when nothing failed, 1 otherwise, 2 on a bad invocation.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
import warnings
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

SDK = f"python-sdk {version('mcp')}"

# Every tool this driver calls. A tool the server lists that is not here fails the run, so a new tool
# cannot slip past the suite; a tool here that the server does not list fails it too.
KNOWN_TOOLS = {
    "whoami", "connect_make", "list_make_connections", "remove_make_connection", "sync_usage",
    "list_scenarios", "get_scenario_usage", "pause_scenarios", "resume_scenarios", "create_budget",
    "get_budget", "list_budgets", "update_budget", "delete_budget", "get_budget_status",
    "get_budget_chart", "get_budget_history", "forecast_spend", "add_threshold", "update_threshold",
    "remove_threshold", "list_thresholds", "add_threshold_action", "remove_threshold_action",
    "list_threshold_actions", "set_scenario_critical", "preview_action", "list_actions", "get_action",
    "approve_action", "reject_action", "cancel_action", "reverse_action", "add_webhook", "list_webhooks", "remove_webhook",
    "query_audit_log", "verify_audit_chain", "create_audit_checkpoint",
}


class Missing(Exception):
    """A value an earlier step should have produced is not there (that step already failed)."""


class Report:
    def __init__(self, label: str) -> None:
        self.label = label
        self.passed = 0
        self.failures: list[str] = []
        self.skipped: list[str] = []
        self.sdk_logs: list[str] = []
        # tools called at all, and tool name -> calls whose result the SDK accepted (or an expected error)
        self.attempted: set[str] = set()
        self.accepted: dict[str, int] = {}

    def ok(self, what: str) -> None:
        self.passed += 1
        print(f"ok    [{self.label}] {what}", flush=True)

    def fail(self, what: str, why: str) -> None:
        line = f"[{self.label}] {what}: {why}"
        self.failures.append(line)
        print(f"FAIL  {line}", flush=True)

    def skip(self, what: str, why: str) -> None:
        self.skipped.append(f"{what} ({why})")
        print(f"skip  [{self.label}] {what}: {why}", flush=True)

    def note(self, what: str) -> None:
        print(f"note  [{self.label}] {what}", flush=True)


class LogCollector(logging.Handler):
    """The SDK's own warnings and errors (e.g. `Session termination failed: 202`), printed and kept."""

    def __init__(self, report: Report) -> None:
        super().__init__(level=logging.WARNING)
        self.report = report

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.levelname} {record.name}: {record.getMessage()}"
        self.report.sdk_logs.append(text)
        print(f"sdklog [{self.report.label}] {text}", flush=True)


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def condensed(e: Exception) -> str:
    """The SDK's error text without the schema and instance dumps jsonschema appends (its first paragraph,
    and where the failing keyword sits in the schema and the instance)."""
    text = str(e)
    head, _, rest = text.partition("\n\n")
    where = [ln.strip().rstrip(":") for ln in rest.splitlines() if ln.startswith(("Failed validating", "On instance"))]
    return "; ".join([head.strip(), *where])


def need(value: Any, what: str) -> Any:
    if value is None:
        raise Missing(what)
    return value


def field(obj: Any, *path: str | int) -> Any:
    """obj[path...] or None, for reading structured results without KeyErrors."""
    for p in path:
        if isinstance(p, int):
            obj = obj[p] if isinstance(obj, list) and len(obj) > p else None
        else:
            obj = obj.get(p) if isinstance(obj, dict) else None
        if obj is None:
            return None
    return obj


class Conn:
    """One connected principal: the SDK's `Client` plus the bookkeeping of its tool calls."""

    def __init__(self, run: Run, client: Client, who: str) -> None:
        self.run = run
        self.client = client
        self.who = who
        self.rejection: Exception | None = None
        self.raw: types.CallToolResult | None = None
        # Keep the SDK's validation exactly as it is, and remember the result it was handed, so that the run
        # can go on after a rejection. The original method still runs and its exception still propagates
        # out of `Client.call_tool`.
        session = client.session
        sdk_validate = session.validate_tool_result

        async def validate_and_remember(name: str, result: types.CallToolResult) -> None:
            self.raw = result
            try:
                await sdk_validate(name, result)
            except Exception as e:
                self.rejection = e
                raise

        session.validate_tool_result = validate_and_remember  # type: ignore[method-assign]

    async def list_tools(self) -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor = None
        while True:
            page = await self.client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                return tools

    async def call(self, tool: str, args: dict[str, Any], expect_error: str | None = None) -> Any:
        """Call `tool`; returns its structured content (the raw content if the SDK rejected it), or None."""
        report = self.run.report
        step = f"tools/call {tool}" + (f" (as {self.who})" if self.who != self.run.requester_name else "")
        self.rejection, self.raw = None, None
        report.attempted.add(tool)
        try:
            result = await self.client.call_tool(tool, args)
        except Exception as e:
            if self.rejection is e and self.raw is not None:
                report.fail(step, f"the SDK rejected the result: {condensed(e)}")
                return self.raw.structured_content
            kind = "protocol error" if isinstance(e, MCPError) else f"{type(e).__name__}"
            report.fail(step, f"{kind}: {e}")
            return None
        if expect_error is not None:
            text = text_of(result)
            if not result.is_error:
                report.fail(step, f"expected a tool error starting {expect_error!r}, got success: {text[:300]}")
            elif not text.startswith(expect_error):
                report.fail(step, f"expected a tool error starting {expect_error!r}, got: {text[:300]}")
            elif result.structured_content is not None:
                report.fail(step, f"a tool error must not carry structuredContent: {result.structured_content}")
            else:
                report.accepted[tool] = report.accepted.get(tool, 0) + 1
                report.ok(f"{step}: expected tool error (isError, text content): {text[:160]}")
            return None
        if result.is_error:
            report.fail(step, f"tool error: {text_of(result)[:500]}")
            return None
        report.accepted[tool] = report.accepted.get(tool, 0) + 1
        report.ok(step)
        return result.structured_content


class Run:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.transport = config["transport"]
        # The SDK's connect mode: "auto" (its default: probe server/discover, fall back to initialize) or
        # "legacy" (initialize only, as SDK 1.x clients do).
        self.mode = config.get("client_mode") or "auto"
        suffix = "" if self.mode == "auto" else f" mode={self.mode}"
        self.report = Report(f"{SDK}/{self.transport}{suffix}")
        self.requester_name = config["requester"]["subject"]

    @asynccontextmanager
    async def connect(self, principal: dict[str, Any]):
        if "stdio" in principal:
            s = principal["stdio"]
            params = StdioServerParameters(command=s["command"], args=s["args"], env=s["env"])
            log = open(s["stderr_log"], "a") if s.get("stderr_log") else sys.stderr
            try:
                async with Client(stdio_client(params, errlog=log), mode=self.mode) as client:
                    yield client
            finally:
                if log is not sys.stderr:
                    log.close()
        else:
            h = principal["http"]
            headers = {"Authorization": f"Bearer {h['token']}"}
            timeout = httpx2.Timeout(30, read=60)
            async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
                async with Client(streamable_http_client(h["url"], http_client=http), mode=self.mode) as client:
                    yield client

    async def check_connection(self, client: Client, principal: dict[str, Any]) -> None:
        info = client.server_info
        self.report.note(
            f"connected as {principal['subject']}: protocol {client.protocol_version}, server "
            f"{info.name if info else '?'} {info.version if info else '?'}"
        )

    async def main(self) -> None:
        requester = self.config["requester"]
        async with self.connect(requester) as client:
            await self.check_connection(client, requester)
            alice = Conn(self, client, requester["subject"])
            await self.scenario(alice)

    async def step(self, what: str, coro_fn) -> Any:
        """Run one non-tool step (resources, prompts, checks), turning any exception into a FAIL line."""
        try:
            return await coro_fn()
        except Missing as m:
            self.report.skip(what, f"needs {m} from an earlier step that failed")
        except MCPError as e:
            self.report.fail(what, f"protocol error {e.code}: {e.message}")
        except Exception as e:
            self.report.fail(what, f"{type(e).__name__}: {e}")
        return None

    async def scenario(self, alice: Conn) -> None:
        r = self.report
        cfg = self.config
        make = cfg["make"]
        org, team = cfg["organization_id"], cfg["team_id"]
        top, other = cfg["scenarios"]["top"], cfg["scenarios"]["other"]

        # --- tools/list: every tool known, validation on ---------------------------------------------
        tools = await self.step("tools/list", alice.list_tools)
        if tools is None:
            return
        listed = {t.name for t in tools}
        r.note(f"tools/list: {len(listed)} tools")
        for name in sorted(listed - KNOWN_TOOLS):
            r.fail("tools/list", f"lists `{name}`, which this driver has no call for: add it to the interop drivers")
        for name in sorted(KNOWN_TOOLS - listed):
            r.fail("tools/list", f"does not list `{name}`, which the drivers expect")
        no_schema = sorted(t.name for t in tools if t.output_schema is None)
        if no_schema:
            r.fail("tools/list", f"tools without an outputSchema (nothing to validate): {no_schema}")

        async def validation_is_on() -> None:
            # The SDK's own check, fed an empty object that the whoami schema forbids (required fields).
            bogus = types.CallToolResult(content=[], structured_content={})
            try:
                await alice.client.session.validate_tool_result("whoami", bogus)
            except RuntimeError as e:
                r.ok(f"output-schema validation is on (the SDK rejects {{}} for whoami: {str(e)[:100]})")
                return
            r.fail("output-schema validation", "the SDK accepted {} for whoami: validation is off")

        await self.step("output-schema validation self-check", validation_is_on)

        async def run(what: str, fn):
            return await self.step(what, fn)

        # --- identity, Make link ---------------------------------------------------------------------
        me = await alice.call("whoami", {})
        if me is not None and me.get("subject") != self.requester_name:
            r.fail("whoami", f"subject {me.get('subject')!r}, expected {self.requester_name!r}")
        conn = await alice.call(
            "connect_make",
            {"zone": make["zone"], "auth_kind": "api_token", "token": make["token"],
             "organization_ids": make["organization_ids"], "label": f"interop {r.label}"},
        )
        conn_id = field(conn, "id")
        await alice.call("list_make_connections", {})
        await alice.call("sync_usage", {})
        await alice.call("list_scenarios", {"organization_id": org})
        await alice.call("get_scenario_usage", {"scenario_id": top})

        # --- budgets ---------------------------------------------------------------------------------
        budget = await alice.call(
            "create_budget",
            {"name": f"interop {r.label}", "description": "created by the interop suite", "unit": "credits",
             "limit": 40000, "money": {"currency": "EUR", "price_per_1000_units_minor": 900},
             "period": {"kind": "monthly"}, "timezone": "UTC",
             "scope": {"organization_id": org, "team_ids": [team]}},
        )
        budget_id = field(budget, "id")

        async def budget_steps() -> None:
            bid = need(budget_id, "the budget id (create_budget)")
            got = await alice.call("get_budget", {"id": bid})
            await alice.call("list_budgets", {})
            ver = need(field(got, "version") or field(budget, "version"), "the budget version (get_budget)")
            await alice.call("update_budget", {"id": bid, "version": ver, "description": "updated by the interop suite"})
            await alice.call("get_budget_status", {"id": bid})
            await alice.call("get_budget_chart", {"id": bid})
            await alice.call("get_budget_history", {"id": bid})
            await alice.call("forecast_spend", {"id": bid, "horizon_days": 7})

        await run("budget tools", budget_steps)

        # --- thresholds, webhooks, actions -----------------------------------------------------------
        state: dict[str, Any] = {}

        async def threshold_steps() -> None:
            bid = need(budget_id, "the budget id (create_budget)")
            # 1 credit actual: crossed at the next sync, so the pause actions below create plans.
            t = await alice.call(
                "add_threshold",
                {"budget_id": bid, "kind": "absolute", "value": 1, "basis": "actual", "severity": "warning",
                 "label": "interop low threshold"},
            )
            tid = need(field(t, "id"), "the threshold id (add_threshold)")
            state["threshold"] = tid
            tver = need(field(t, "version"), "the threshold version (add_threshold)")
            await alice.call("update_threshold", {"id": tid, "version": tver, "severity": "critical"})
            await alice.call("list_thresholds", {"budget_id": bid})

        await run("threshold tools", threshold_steps)

        hook = await alice.call(
            "add_webhook", {"url": cfg["webhook"]["url"], "secret": cfg["webhook"]["secret"], "label": "interop"}
        )
        hook_id = field(hook, "id")
        await alice.call("list_webhooks", {})

        async def action_steps() -> None:
            tid = need(state.get("threshold"), "the threshold id (add_threshold)")
            state["actions"] = []
            # Two pause actions on the one threshold: the crossing makes two plans, one to approve (and
            # reverse), one to reject.
            for _ in range(2):
                a = await alice.call(
                    "add_threshold_action",
                    {"threshold_id": tid, "kind": "pause_scenarios", "selector": {"kind": "top_n", "top_n": 1},
                     "mode": "requires_approval"},
                )
                state["actions"].append(need(field(a, "id"), "the action id (add_threshold_action)"))
            await alice.call("list_threshold_actions", {"threshold_id": tid})
            await alice.call("preview_action", {"action_id": state["actions"][0]})
            await alice.call("set_scenario_critical", {"scenario_id": other, "critical": True})

        await run("threshold action tools", action_steps)

        async def plan_steps() -> None:
            bid = need(budget_id, "the budget id (create_budget)")
            synced = await alice.call("sync_usage", {})
            crossings = field(synced, "threshold_crossings")
            if synced is not None and not crossings:
                r.fail("sync_usage (second)", f"the low threshold was not crossed: {json.dumps(synced)[:400]}")
            plans = await alice.call("list_actions", {"budget_id": bid})
            plan_ids = [p.get("id") for p in (field(plans, "plans") or [])]
            if plans is not None and len(plan_ids) != 2:
                r.fail("list_actions", f"expected 2 plans awaiting approval, got {json.dumps(plans)[:400]}")
            approve_id = need(plan_ids[0] if plan_ids else None, "a plan (list_actions)")
            reject_id = need(plan_ids[1] if len(plan_ids) > 1 else None, "a second plan (list_actions)")
            await alice.call("get_action", {"plan_id": approve_id})
            # Four eyes: the requester may not approve its own plan. A well-formed isError result.
            await alice.call("approve_action", {"plan_id": approve_id}, expect_error="permission_denied:")
            approver = self.config["approver"]
            async with self.connect(approver) as bob_client:
                await self.check_connection(bob_client, approver)
                bob = Conn(self, bob_client, approver["subject"])
                await bob.list_tools()  # the SDKs cache output schemas from tools/list
                who = await bob.call("whoami", {})
                if who is not None and who.get("subject") != approver["subject"]:
                    r.fail("whoami (approver)", f"subject {who.get('subject')!r}, expected {approver['subject']!r}")
                done = await bob.call("approve_action", {"plan_id": approve_id, "reason": "interop: approved"})
                if done is not None and done.get("state") != "executed":
                    r.fail("approve_action", f"plan state {done.get('state')!r}, expected 'executed'")
            rejected = await alice.call("reject_action", {"plan_id": reject_id, "reason": "interop: rejected"})
            if rejected is not None and rejected.get("state") != "rejected":
                r.fail("reject_action", f"plan state {rejected.get('state')!r}, expected 'rejected'")
            # Only a scheduled (delayed) plan can be cancelled: a rejected one is a conflict.
            await alice.call("cancel_action", {"plan_id": reject_id, "reason": "interop: too late"}, expect_error="conflict:")
            back = await alice.call("reverse_action", {"plan_id": approve_id, "reason": "interop: reversed"})
            if back is not None and back.get("state") != "reversed":
                r.fail("reverse_action", f"plan state {back.get('state')!r}, expected 'reversed'")

        await run("plan tools", plan_steps)

        await alice.call("pause_scenarios", {"scenario_ids": [other], "reason": "interop: ad-hoc pause"})
        await alice.call("resume_scenarios", {"scenario_ids": [other], "reason": "interop: ad-hoc resume"})

        # --- resources and prompts ---------------------------------------------------------------------
        async def resources() -> None:
            bid = need(budget_id, "the budget id (create_budget)")
            uri = f"budget://{bid}"
            listed = await alice.client.list_resources()
            uris = [str(x.uri) for x in listed.resources]
            if uri not in uris:
                r.fail("resources/list", f"{uri} not listed: {uris}")
            else:
                r.ok(f"resources/list ({len(uris)} resources, {uri} among them)")
            templates = await alice.client.list_resource_templates()
            names = [t.uri_template for t in templates.resource_templates]
            if "budget://{id}" not in names:
                r.fail("resources/templates/list", f"budget://{{id}} not listed: {names}")
            else:
                r.ok(f"resources/templates/list ({names})")
            for u in (uri, "audit://head"):
                read = await self.step(f"resources/read {u}", lambda u=u: alice.client.read_resource(u))
                if read is None:
                    continue
                texts = [c.text for c in read.contents if isinstance(c, types.TextResourceContents)]
                try:
                    json.loads(texts[0])
                    r.ok(f"resources/read {u} ({len(texts[0])} chars of JSON)")
                except Exception as e:
                    r.fail(f"resources/read {u}", f"expected one JSON text content, got {read.contents!r:.300} ({e})")

        await run("resources", resources)

        async def prompts() -> None:
            bid = need(budget_id, "the budget id (create_budget)")
            listed = await alice.client.list_prompts()
            r.ok(f"prompts/list ({[p.name for p in listed.prompts]})")
            for p in listed.prompts:
                args: dict[str, str] = {}
                for a in p.arguments or []:
                    if a.name == "budget_id":
                        args[a.name] = bid
                    elif a.required:
                        r.fail(f"prompts/get {p.name}", f"the driver has no value for required argument {a.name!r}")
                got = await self.step(f"prompts/get {p.name}", lambda p=p, args=args: alice.client.get_prompt(p.name, args))
                if got is not None:
                    if got.messages:
                        r.ok(f"prompts/get {p.name} ({len(got.messages)} messages)")
                    else:
                        r.fail(f"prompts/get {p.name}", "no messages")

        await run("prompts", prompts)

        # --- audit -------------------------------------------------------------------------------------
        await alice.call("query_audit_log", {"limit": 20})
        verified = await alice.call("verify_audit_chain", {})
        if verified is not None and verified.get("valid") is not True:
            r.fail("verify_audit_chain", f"chain not valid: {json.dumps(verified)[:400]}")
        await alice.call("create_audit_checkpoint", {})
        await alice.call("whoami", {})

        # --- clean-up ----------------------------------------------------------------------------------
        async def cleanup() -> None:
            for aid in state.get("actions") or []:
                await alice.call("remove_threshold_action", {"action_id": aid})
            if not state.get("actions"):
                raise Missing("the action ids (add_threshold_action)")
            await alice.call("remove_threshold", {"id": need(state.get("threshold"), "the threshold id")})

        await run("clean-up of actions and thresholds", cleanup)

        async def cleanup_rest() -> None:
            await alice.call("remove_webhook", {"webhook_id": need(hook_id, "the webhook id (add_webhook)")})
            await alice.call("delete_budget", {"id": need(budget_id, "the budget id (create_budget)")})
            await alice.call("remove_make_connection", {"id": need(conn_id, "the connection id (connect_make)")})

        await run("clean-up of the webhook, budget and connection", cleanup_rest)

        for name in sorted(listed & KNOWN_TOOLS):
            if name not in r.attempted:
                r.fail(f"coverage of {name}", "the driver never called this tool (an earlier step failed)")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        config = json.load(f)
    run = Run(config)
    report = run.report
    logging.basicConfig(level=logging.WARNING, handlers=[LogCollector(report)], force=True)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    try:
        anyio.run(run.main)
    except BaseException as e:  # a crash of the driver or the SDK outside one step
        report.fail("run", f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    print(f"summary [{report.label}] {report.passed} checks ok, {len(report.failures)} failures, "
          f"{len(report.skipped)} steps skipped, {len(report.sdk_logs)} SDK log warnings", flush=True)
    for line in report.failures:
        print(f"  FAIL {line}", flush=True)
    for line in report.sdk_logs:
        print(f"  SDK LOG {line}", flush=True)
    # An SDK warning (`Session termination failed: 202`, a schema it cannot read, …) means the server departs
    # from what the SDK expects: it fails the run like a rejection does.
    return 1 if report.failures or report.sdk_logs else 0


if __name__ == "__main__":
    sys.exit(main())
