//! `taskwheel workflow …`: submit a graph of named jobs from a JSON file,
//! follow it, cancel it. Tables for people, the API's JSON with `--json`.

use std::collections::HashMap;

use serde_json::Value;
use taskwheel_client::Client;
use taskwheel_core::workflow::{SubmitWorkflow, WorkflowId, WorkflowView};

use crate::output::{explain, parse_payload, print_json, table};

#[derive(Debug, Clone, clap::Subcommand)]
pub(crate) enum WorkflowCommand {
    /// Submit a workflow: `{"name"?, "idempotency_key"?, "jobs": [{"name", "kind", "depends_on": [names], ...}]}`.
    Submit {
        /// The workflow as JSON, or `@path` to read it from a file.
        #[arg(value_parser = parse_payload)]
        definition: Value,
    },
    /// Show a workflow: its state and every job's.
    Get { id: WorkflowId },
    /// Cancel every job of the workflow that has not ended.
    Cancel { id: WorkflowId },
}

pub(crate) async fn run(server: &str, json: bool, cmd: WorkflowCommand) -> anyhow::Result<()> {
    let client = Client::new(server)?;
    let view = match cmd {
        WorkflowCommand::Submit { definition } => {
            let request: SubmitWorkflow = serde_json::from_value(definition)
                .map_err(|e| anyhow::anyhow!("not a workflow: {e}"))?;
            client.submit_workflow(&request).await
        }
        WorkflowCommand::Get { id } => client.get_workflow(id).await,
        WorkflowCommand::Cancel { id } => client.cancel_workflow(id).await,
    }
    .map_err(|e| explain(e, server))?;
    if json {
        return print_json(&view);
    }
    print!("{}", workflow_text(&view));
    Ok(())
}

/// A header line, then one row per job (parents first) with its parents by name.
fn workflow_text(view: &WorkflowView) -> String {
    let names: HashMap<_, _> = view
        .job_ids
        .iter()
        .map(|(name, id)| (*id, name.as_str()))
        .collect();
    let rows = view
        .jobs
        .iter()
        .map(|j| {
            let parents: Vec<String> = j
                .depends_on
                .iter()
                .map(|p| {
                    names
                        .get(p)
                        .map_or_else(|| p.to_string(), |n| n.to_string())
                })
                .collect();
            vec![
                j.workflow_job.clone().unwrap_or_default(),
                j.id.to_string(),
                j.kind.clone(),
                j.state.to_string(),
                parents.join(", "),
            ]
        })
        .collect();
    let state = serde_json::to_value(view.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut text = format!(
        "workflow {}{}: {state}{}\n",
        view.id,
        view.name
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default(),
        if view.deduplicated == Some(true) {
            " (stored earlier under this idempotency key)"
        } else {
            ""
        }
    );
    text.push_str(&table(&["NAME", "ID", "KIND", "STATE", "DEPENDS_ON"], rows));
    text
}
