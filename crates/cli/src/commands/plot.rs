//! `vlmscale plot`: the paper's Figure 1.
use super::law_source::LawArgs;
use super::{parse_list, UsageError};
use anyhow::Result;
use scaling::plot::Figure1;
use std::path::PathBuf;

/// Draw Figure 1 (predicted error vs inference FLOPs, one curve per N, observed cells sized by V, the
/// compute-optimal frontier dotted) for each Q, as `figure1_q{Q}.png` and `.svg`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub law: LawArgs,
    /// Text-token counts Q, one figure each.
    #[arg(long, default_value = "0,50")]
    pub text_tokens: String,
    /// Output folder (created if missing).
    #[arg(long, default_value = "plots")]
    pub out_dir: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let qs = parse_list("--text-tokens", &a.text_tokens)?;
    if qs.iter().any(|q| *q < 0.0) {
        return Err(UsageError("--text-tokens must be ≥ 0".into()).into());
    }
    let r = a.law.resolve()?;
    let data = match r.data {
        Some(d) => d,
        None => a.law.data.load()?.0,
    };
    std::fs::create_dir_all(&a.out_dir).map_err(|source| scaling::Error::Io { path: a.out_dir.clone(), source })?;
    for q in qs {
        let fig = Figure1 {
            law: r.law,
            axis: r.axis,
            text_tokens: q,
            data: data.clone(),
            title: format!("Scaling N vs V — task {}, Q = {q}", data.rows[0].task),
        };
        for p in fig.write(&a.out_dir.join(format!("figure1_q{q}")))? {
            println!("wrote {}", p.display());
        }
    }
    Ok(())
}
