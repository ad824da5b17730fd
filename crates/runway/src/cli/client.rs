//! `runway client`: one call of the service per invocation.

use anyhow::Context as _;

use runway_core::render::parse_case_text;

use super::{ClientArgs, ClientCommand};

pub async fn run(args: ClientArgs) -> anyhow::Result<()> {
    let token = match &args.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading {}", p.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let mut c = runway::client::Client::connect(&args.endpoint, token).await?;
    match args.what {
        ClientCommand::Launch { case, run_id } => {
            let text = std::fs::read_to_string(&case)
                .with_context(|| format!("reading case file {}", case.display()))?;
            let value = parse_case_text(&text)?;
            let req = runway::client::request_from_case(&value, run_id.as_deref())?;
            println!("{}", c.launch(req).await?);
        }
        ClientCommand::Health {
            run_id,
            run_status,
            compat,
        } => println!("{}", c.health(&run_id, &run_status, compat).await?),
        ClientCommand::DebugInfo { run_id } => println!("{}", c.debug_info(&run_id).await?),
        ClientCommand::Terminate { run_id } => println!("{}", c.terminate(&run_id).await?),
        ClientCommand::SubmitStep {
            kwargs_file,
            queue,
            priority,
            task_id,
        } => {
            let kwargs_json = std::fs::read_to_string(&kwargs_file)
                .with_context(|| format!("reading {}", kwargs_file.display()))?;
            let req = runway_proto::SubmitStepRequest {
                kwargs_json,
                queue,
                priority,
                task_id,
                task_name: String::new(),
            };
            println!("{}", c.submit_step(req).await?);
        }
        ClientCommand::WatchStep { task_id } => c.watch_step(&task_id, |s| println!("{s}")).await?,
        ClientCommand::Watch {
            run_ids,
            until_final,
        } => c.watch(&run_ids, until_final, |t| println!("{t}")).await?,
    }
    Ok(())
}
