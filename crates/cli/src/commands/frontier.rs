//! `vlmscale frontier`: the compute-optimal (N, V) for inference budgets.
use super::law_source::LawArgs;
use super::{parse_list, UsageError};
use anyhow::Result;
use scaling::frontier::{closed_form_visual_tokens, logspace, Domain, FrontierSpec, Optimum, PaperCost};
use scaling::law::{Law, TokenAxis};
use serde::Serialize;

/// The (N, V) with the lowest predicted error among those whose inference cost 2·N·(Q+V) fits a budget.
///
/// N is continuous in [0.05, 10000] billion and V continuous in [1, 576] unless given as sets.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub law: LawArgs,
    /// Q, text tokens per query (0: text cached; the paper also plots 50).
    #[arg(long, default_value_t = 0.0)]
    pub text_tokens: f64,
    /// Budget(s) in FLOPs per query (repeat the flag for several); default: a table over --budget-range.
    #[arg(long, value_name = "FLOPS")]
    pub budget: Vec<f64>,
    /// Table of budgets: LO,HI,COUNT (log-spaced FLOPs).
    #[arg(long, value_name = "LO,HI,COUNT", default_value = "1e10,1e15,11")]
    pub budget_range: String,
    /// Candidate LLM sizes in billions, comma-separated (default: continuous).
    #[arg(long, value_name = "N1,N2,..")]
    pub llm_params: Option<String>,
    /// Continuous N range in billions: MIN,MAX.
    #[arg(long, value_name = "MIN,MAX", default_value = "0.05,10000", conflicts_with = "llm_params")]
    pub llm_range: String,
    /// Candidate visual-token counts, comma-separated (default: continuous).
    #[arg(long, value_name = "V1,V2,..")]
    pub visual_tokens: Option<String>,
    /// Continuous V range: MIN,MAX.
    #[arg(long, value_name = "MIN,MAX", default_value = "1,576", conflicts_with = "visual_tokens")]
    pub visual_range: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn domain(flag: &str, set: &Option<String>, range_flag: &str, range: &str) -> Result<Domain> {
    Ok(match set {
        Some(s) => Domain::Set(parse_list(flag, s)?),
        None => match parse_list(range_flag, range)?.as_slice() {
            [min, max] => Domain::Range { min: *min, max: *max },
            _ => return Err(UsageError(format!("{range_flag}: expected MIN,MAX, got `{range}`")).into()),
        },
    })
}

#[derive(Serialize)]
struct Out<'a> {
    law: Law,
    token_axis: TokenAxis,
    origin: &'a str,
    text_tokens: f64,
    cost_model: &'static str,
    closed_form_visual_tokens: Option<f64>,
    optima: Vec<Option<Optimum>>,
}

pub fn run(a: Args) -> Result<()> {
    let r = a.law.resolve()?;
    let spec = FrontierSpec {
        law: r.law,
        axis: r.axis,
        text_tokens: a.text_tokens,
        sizes: domain("--llm-params", &a.llm_params, "--llm-range", &a.llm_range)?,
        tokens: domain("--visual-tokens", &a.visual_tokens, "--visual-range", &a.visual_range)?,
    };
    spec.check()?;
    let budgets = if a.budget.is_empty() {
        match parse_list("--budget-range", &a.budget_range)?.as_slice() {
            [lo, hi, k] if *lo > 0.0 && hi >= lo && *k >= 1.0 && k.fract() == 0.0 => logspace(*lo, *hi, *k as usize),
            _ => return Err(UsageError(format!("--budget-range: expected LO,HI,COUNT with 0 < LO ≤ HI, got `{}`", a.budget_range)).into()),
        }
    } else {
        a.budget.clone()
    };
    let optima = budgets.iter().map(|&b| spec.optimum(&PaperCost, b)).collect::<scaling::Result<Vec<_>>>()?;
    let closed = match (r.law, r.axis) {
        (Law::Multiplicative { alpha, beta, .. }, TokenAxis::Visual) => closed_form_visual_tokens(alpha, beta, a.text_tokens),
        _ => None,
    };
    if a.json {
        let out = Out { law: r.law, token_axis: r.axis, origin: &r.origin, text_tokens: a.text_tokens, cost_model: "2·N·(Q+V) FLOPs", closed_form_visual_tokens: closed, optima };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("vlmscale frontier — law from {} (α = {:.4}, β = {:.4}), Q = {} text tokens", r.origin, r.law.alpha(), r.law.beta(), a.text_tokens);
    println!("cost model: the paper's 2·N·(Q+V) FLOPs per query; N (billions) over {}, V over {}\n", spec.sizes, spec.tokens);
    println!("{:>12}  {:>12}  {:>10}  {:>10}  {:>12}", "budget", "N* (B)", "V*", "pred. error", "FLOPs used");
    for (b, o) in budgets.iter().zip(&optima) {
        match o {
            Some(o) => println!("{b:>12.3e}  {:>12.4}  {:>10.2}  {:>10.4}  {:>12.3e}", o.llm_params, o.visual_tokens, o.predicted_error, o.cost),
            None => println!("{b:>12.3e}  {:>12}  {:>10}  {:>10}  {:>12}", "-", "-", "(too small)", "-"),
        }
    }
    if let Some(v) = closed {
        println!("\nclosed form (continuous N and V, T = V): V* = β·Q/(α−β) = {v:.2}{}", if v < 1.0 { " → V = 1, the fewest tokens" } else { "" });
    } else if r.law.alpha() <= r.law.beta() {
        println!("\nα ≤ β: error moves at least as fast with V as with N, so visual tokens pay off (OCR-like regime).");
    }
    Ok(())
}
