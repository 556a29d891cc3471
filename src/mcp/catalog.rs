//! The tool catalogue: the groups of tools, and what is generated from them and the permission table
//! (the server's instructions, the README's tool table, the schema snapshots), so no list of tools is
//! kept by hand.
//!
//! The groups are also the toolsets a server can be started with (`--toolsets`, see [`chosen`]).
//!
//! A new tool goes into the `#[tool_router]` block of its group's file and into
//! `auth::TOOL_PERMISSIONS`; then `MBM_UPDATE_DOCS=1 cargo test --lib catalog` rewrites the README table
//! and the snapshots in `tests/toolsnaps/`. Without the variable the same tests fail on any difference, so
//! a changed schema or description is always a reviewed change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::Tool;

use super::{BudgetServer, schema};
use crate::auth::{ARGUMENT_RULES, tool_permission};
use crate::config::settings::ToolChoice;

/// A group of tools that belong together, in the order the server lists them.
pub struct Group {
    pub name: &'static str,
    /// How the instructions introduce the group.
    pub title: &'static str,
    pub tools: fn() -> ToolRouter<BudgetServer>,
}

pub const GROUPS: &[Group] = &[
    Group { name: "identity", title: "Who you are", tools: BudgetServer::identity_tools },
    Group { name: "budgets", title: "Budgets", tools: BudgetServer::budget_tools },
    Group { name: "status", title: "How a budget stands", tools: BudgetServer::status_tools },
    Group { name: "thresholds", title: "Thresholds", tools: BudgetServer::threshold_tools },
    Group { name: "make", title: "Make.com connections and data", tools: BudgetServer::make_tools },
    Group { name: "control", title: "Pause or resume scenarios by hand", tools: BudgetServer::control_tools },
    Group { name: "actions", title: "Automated actions", tools: BudgetServer::action_tools },
    Group { name: "webhooks", title: "Notifications", tools: BudgetServer::webhook_tools },
    Group { name: "audit", title: "Audit (role auditor or admin)", tools: BudgetServer::audit_tools },
];

const INTRO: &str = "make-budget-mcp keeps Make.com (make.com) credit spend under budget. Call `whoami` first: it \
shows your tenant, role and permissions. Limits are integers in the budget's unit (credits or operations).";

const OUTRO: &str = "To change a budget or threshold, read it, then update it with the `version` you read; a \
`conflict` error means someone changed it in between: read it again and retry. Errors begin with a code \
(invalid_argument, not_found, conflict, permission_denied, make_error, unavailable, rate_limited, cancelled, \
internal) followed by what to do about it.";

/// The group every server serves whatever toolsets are chosen: an agent's first call is `whoami`.
const ALWAYS: &str = "identity";

/// The names of the tools `choice` selects (before read-only filtering).
pub fn chosen(choice: &ToolChoice) -> BTreeSet<String> {
    let all = choice.toolsets.iter().any(|t| t == "all");
    let mut names: BTreeSet<String> = GROUPS
        .iter()
        .filter(|g| all || g.name == ALWAYS || choice.toolsets.iter().any(|t| t == g.name))
        .flat_map(tools_of)
        .map(|t| t.name.to_string())
        .collect();
    names.extend(choice.tools.iter().cloned());
    names
}

/// Refuse toolset and tool names the catalogue does not have, naming the setting and the valid names.
pub fn check_choice(choice: &ToolChoice) -> Result<(), String> {
    let sets: Vec<&str> = GROUPS.iter().map(|g| g.name).chain(["all"]).collect();
    if let Some(bad) = choice.toolsets.iter().find(|t| !sets.contains(&t.as_str())) {
        let bad: String = bad.chars().take(40).collect();
        return Err(format!("invalid setting `toolsets`: unknown toolset {bad:?}; toolsets are {}", sets.join(", ")));
    }
    let tools = BudgetServer::router();
    if let Some(bad) = choice.tools.iter().find(|t| !tools.has_route(t)) {
        let bad: String = bad.chars().take(40).collect();
        return Err(format!(
            "invalid setting `tools`: unknown tool {bad:?}; `tools/list` with --toolsets all shows them"
        ));
    }
    Ok(())
}

/// Tools whose results have the same shape carry the full output schema once: in the `get_` tool of
/// the shape where there is one (else the first by name), while the others point to it with their
/// top-level keys (see [`schema::same_as`]).
pub fn share_output_shapes(router: &mut ToolRouter<BudgetServer>) {
    let mut shapes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, route) in &router.map {
        if let Some(out) = &route.attr.output_schema {
            let key = serde_json::to_string(out.as_ref()).expect("a schema serialises");
            shapes.entry(key).or_default().push(name.to_string());
        }
    }
    for mut names in shapes.into_values().filter(|n| n.len() > 1) {
        names.sort();
        let canonical = names.iter().find(|n| n.starts_with("get_")).unwrap_or(&names[0]).clone();
        for name in names.iter().filter(|n| **n != canonical) {
            let route = router.map.get_mut(name.as_str()).expect("listed above");
            let full = route.attr.output_schema.take().expect("listed above");
            route.attr.output_schema = Some(Arc::new(schema::same_as(&canonical, &full)));
        }
    }
}

/// A group's tools in name order.
fn tools_of(group: &Group) -> Vec<Tool> {
    let mut tools = (group.tools)().list_all();
    tools.sort_by(|a, b| a.name.cmp(&b.name));
    tools
}

/// The server's instructions for the tools `served` offers: what each group holds, by name.
pub fn instructions(served: &ToolRouter<BudgetServer>) -> String {
    let mut out = String::from(INTRO);
    for group in GROUPS {
        let names: Vec<String> = tools_of(group)
            .into_iter()
            .filter(|t| served.has_route(&t.name))
            .map(|t| format!("`{}`", t.name))
            .collect();
        if !names.is_empty() {
            out.push_str(&format!(" {}: {}.", group.title, names.join(", ")));
        }
    }
    let off: Vec<&str> =
        GROUPS.iter().filter(|g| !tools_of(g).iter().any(|t| served.has_route(&t.name))).map(|g| g.name).collect();
    if !off.is_empty() {
        out.push_str(&format!(" Not served here (the operator can add them with --toolsets): {}.", off.join(", ")));
    }
    out.push(' ');
    out.push_str(OUTRO);
    out
}

/// The first sentence of a description.
fn first_sentence(description: &str) -> String {
    let text = description.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut from = 0;
    while let Some(i) = text[from..].find(". ") {
        let end = from + i;
        let before = &text[..end];
        if !(before.ends_with("e.g") || before.ends_with("i.e")) {
            return text[..=end].to_owned();
        }
        from = end + 2;
    }
    text
}

/// Who may call a tool, as the README says it.
fn permission_text(tool: &str) -> String {
    let mut text = match tool_permission(tool) {
        Ok(Some(p)) => format!("`{p}`"),
        Ok(None) => "any principal".to_owned(),
        Err(_) => "(missing from the permission table)".to_owned(),
    };
    for rule in ARGUMENT_RULES.iter().filter(|r| r.tool == tool) {
        text.push_str(&format!(
            " (+ `{}` when `{}` is `{}`)",
            rule.needs,
            rule.pointer.trim_start_matches('/').replace('/', "."),
            rule.equals
        ));
    }
    text
}

/// The README's tool table.
pub fn markdown_table() -> String {
    let mut out = String::from("| group | tool | what it does | permission | read-only |\n|---|---|---|---|---|\n");
    for group in GROUPS {
        for t in tools_of(group) {
            let read_only = t.annotations.as_ref().and_then(|a| a.read_only_hint) == Some(true);
            out.push_str(&format!(
                "| {} | `{}` | {} | {} | {} |\n",
                group.name,
                t.name,
                first_sentence(t.description.as_deref().unwrap_or("")).replace('|', "\\|"),
                permission_text(&t.name),
                if read_only { "yes" } else { "no" }
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const BEGIN: &str = "<!-- tools:begin (generated: MBM_UPDATE_DOCS=1 cargo test --lib catalog) -->\n";
    const END: &str = "<!-- tools:end -->";

    fn updating() -> bool {
        std::env::var_os("MBM_UPDATE_DOCS").is_some()
    }

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn every_tool_is_in_exactly_one_group_and_served() {
        let served: Vec<String> = BudgetServer::router().list_all().into_iter().map(|t| t.name.to_string()).collect();
        let mut grouped: Vec<String> = GROUPS.iter().flat_map(tools_of).map(|t| t.name.to_string()).collect();
        grouped.sort();
        let mut all = served.clone();
        all.sort();
        assert_eq!(grouped, all);
    }

    #[test]
    fn instructions_name_every_served_tool_and_only_those() {
        let all = BudgetServer::router();
        let text = instructions(&all);
        for t in all.list_all() {
            assert!(text.contains(&format!("`{}`", t.name)), "{} missing from the instructions", t.name);
        }
        let read_only = instructions(&BudgetServer::router_for(&ToolChoice { read_only: true, ..ToolChoice::all() }));
        assert!(read_only.contains("`get_budget_status`") && !read_only.contains("`update_budget`"), "{read_only}");
        let default = instructions(&BudgetServer::router_for(&ToolChoice::default()));
        assert!(default.contains("`whoami`") && !default.contains("`approve_action`"), "{default}");
        assert!(default.contains(
            "Not served here (the operator can add them with --toolsets): control, actions, webhooks, audit."
        ));
    }

    #[test]
    fn first_sentences_skip_abbreviations() {
        assert_eq!(first_sentence("Do this, e.g. that. Then more."), "Do this, e.g. that.");
        assert_eq!(first_sentence("One line"), "One line");
    }

    #[test]
    fn catalog_readme_table_is_generated() {
        let path = root().join("README.md");
        let readme = std::fs::read_to_string(&path).expect("README.md");
        let (Some(a), Some(b)) = (readme.find(BEGIN), readme.find(END)) else {
            panic!("README.md has no generated tool table between {BEGIN:?} and {END:?}");
        };
        let table = markdown_table();
        if readme[a + BEGIN.len()..b] == table {
            return;
        }
        if updating() {
            let updated = format!("{}{BEGIN}{table}{}", &readme[..a], &readme[b..]);
            std::fs::write(&path, updated).expect("write README.md");
            return;
        }
        panic!("the README's tool table is out of date; run `MBM_UPDATE_DOCS=1 cargo test --lib catalog` and commit");
    }

    /// One snapshot per tool (name, description, annotations, both schemas): an unintended change to what
    /// clients see fails here.
    #[test]
    fn catalog_tool_snapshots_match() {
        let dir = root().join("tests/toolsnaps");
        let mut stale = Vec::new();
        let mut names = Vec::new();
        for tool in BudgetServer::router().list_all() {
            let path = dir.join(format!("{}.json", tool.name));
            names.push(format!("{}.json", tool.name));
            let now = serde_json::to_string_pretty(&tool).expect("tools serialise") + "\n";
            if std::fs::read_to_string(&path).ok().as_deref() == Some(now.as_str()) {
                continue;
            }
            if updating() {
                std::fs::create_dir_all(&dir).expect("create tests/toolsnaps");
                std::fs::write(&path, now).expect("write a snapshot");
            } else {
                stale.push(tool.name.to_string());
            }
        }
        // Snapshots of tools that are gone.
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.ends_with(".json") && !names.contains(&file) {
                if updating() {
                    std::fs::remove_file(entry.path()).expect("remove a stale snapshot");
                } else {
                    stale.push(file);
                }
            }
        }
        assert!(
            stale.is_empty(),
            "tool definitions differ from tests/toolsnaps for {stale:?}; if the change is intended, run \
             `MBM_UPDATE_DOCS=1 cargo test --lib catalog` and commit the snapshots"
        );
    }
}
