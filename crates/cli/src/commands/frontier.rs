//! `vlmscale frontier`: the compute-optimal (N, V) for inference budgets.
use super::law_source::LawArgs;
use super::{parse_list, UsageError};
use anyhow::Result;
use scaling::cost::latency::LatencyProfile;
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
    /// Table of budgets: LO,HI,COUNT (log-spaced FLOPs; COUNT at most 1000).
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
    /// Measured latency profile (`vlmscale bench infer --profile OUT.json`): optimise under time to
    /// first token instead of FLOPs, vision tower included.
    #[arg(long, value_name = "PROFILE.json", requires = "latency_budget")]
    pub latency_profile: Option<std::path::PathBuf>,
    /// Latency budget(s) in seconds of time to first token (with --latency-profile).
    #[arg(long, value_name = "SECONDS", requires = "latency_profile")]
    pub latency_budget: Vec<f64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Above this many billions an `--llm-params` value is taken for a raw parameter count (10⁵ billion
/// = 10¹⁴ parameters, far beyond any LLM).
pub const IMPLAUSIBLE_BILLIONS: f64 = 1e5;

/// A warning for `--llm-params` values (billions) that look like raw parameter counts.
fn warn_units(llm_params: &Option<String>) {
    let Some(s) = llm_params else { return };
    for n in parse_list("--llm-params", s).unwrap_or_default() {
        if n > IMPLAUSIBLE_BILLIONS {
            eprintln!(
                "warning: --llm-params takes billions of parameters: {n:e} billion is {:e} parameters; for {n:e} parameters write {}",
                n * 1e9,
                n / 1e9
            );
        }
    }
}

fn spec_of(a: &Args, r: &super::law_source::Resolved) -> Result<FrontierSpec> {
    warn_units(&a.llm_params);
    let spec = FrontierSpec {
        law: r.law,
        axis: r.axis,
        text_tokens: a.text_tokens,
        sizes: domain("--llm-params", &a.llm_params, "--llm-range", &a.llm_range)?,
        tokens: domain("--visual-tokens", &a.visual_tokens, "--visual-range", &a.visual_range)?,
    };
    spec.check()?;
    Ok(spec)
}

#[derive(Serialize)]
struct LatencyRow {
    latency_budget_s: f64,
    latency_optimum: Option<Optimum>,
    /// What the paper's FLOPs model picks for the same budget (converted to FLOPs at the LLM's measured
    /// rate, vision tower unseen), and that choice's measured TTFT.
    flops_model_choice: Option<Optimum>,
    flops_model_ttft_s: Option<f64>,
    flops_model_agrees: Option<bool>,
    /// With a profile of several weight formats: each format's optimum (its measured LLM rates), and
    /// the format whose optimum predicts the lowest error. The law does not see quantisation error.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    by_format: Vec<FormatChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    best_format: Option<String>,
}

#[derive(Serialize)]
struct FormatChoice {
    weights: String,
    optimum: Option<Optimum>,
}

/// Frontier under a measured latency profile, compared with the FLOPs model's choice.
fn run_latency(a: Args) -> Result<()> {
    let path = a.latency_profile.clone().expect("checked by caller");
    let profile = LatencyProfile::from_file(&path)?;
    let r = a.law.resolve()?;
    let spec = spec_of(&a, &r)?;
    let mut rows = Vec::new();
    for &budget in &a.latency_budget {
        let lat = spec.optimum(&profile, budget)?;
        // The paper's model, given the same time budget, converts it to FLOPs at the LLM's measured rate
        // (2·10⁹ FLOPs per token per billion parameters take `prefill_ms_per_token_per_billion` ms) and
        // spends all of it in the LLM: it does not see the vision tower or QueCC's question pass.
        let flops_budget = 2e9 * budget * 1e3 / profile.prefill_ms_per_token_per_billion;
        let flops_choice = spec.optimum(&PaperCost, flops_budget)?;
        let ttft = flops_choice.as_ref().map(|f| profile.ttft_seconds(f.llm_params, a.text_tokens, f.visual_tokens));
        let agrees = match (&lat, &flops_choice) {
            (Some(o), Some(f)) => Some(
                (f.llm_params / o.llm_params - 1.0).abs() < 1e-3
                    && (f.visual_tokens / o.visual_tokens - 1.0).abs() < 1e-3,
            ),
            (None, None) => None,
            _ => Some(false),
        };
        let mut by_format = Vec::new();
        if !profile.formats.is_empty() {
            for (weights, p) in profile.per_format("") {
                by_format.push(FormatChoice { weights, optimum: spec.optimum(&p, budget)? });
            }
        }
        // Lowest predicted error; on a tie the cheaper choice.
        let best_format = by_format
            .iter()
            .filter_map(|c| c.optimum.as_ref().map(|o| (c, o)))
            .min_by(|(_, a), (_, b)| a.predicted_error.total_cmp(&b.predicted_error).then(a.cost.total_cmp(&b.cost)))
            .map(|(c, _)| c.weights.clone());
        rows.push(LatencyRow {
            latency_budget_s: budget,
            latency_optimum: lat,
            flops_model_choice: flops_choice,
            flops_model_ttft_s: ttft,
            flops_model_agrees: agrees,
            by_format,
            best_format,
        });
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"law": r.law, "origin": r.origin, "profile": profile, "text_tokens": a.text_tokens, "rows": rows})
            )?
        );
        return Ok(());
    }
    println!(
        "vlmscale frontier — law from {} (α = {:.4}, β = {:.4}), Q = {}",
        r.origin,
        r.law.alpha(),
        r.law.beta(),
        a.text_tokens
    );
    println!("cost model: measured time to first token from {} (vision {:.1} ms + compressor {:.1} ms + {:.3} ms per token per billion parameters{})",
        path.display(), profile.vision_ms, profile.compressor_ms, profile.prefill_ms_per_token_per_billion,
        if profile.quecc_query_pass { ", plus QueCC's pass over the question" } else { "" });
    println!("N (billions) over {}, V over {}\n", spec.sizes, spec.tokens);
    println!(
        "{:>10}  {:>10}  {:>8}  {:>10}  {:>9}   the paper's FLOPs model, same budget",
        "TTFT ≤ s", "N* (B)", "V*", "pred. err", "TTFT s"
    );
    for row in &rows {
        match &row.latency_optimum {
            None => println!(
                "{:>10.3}  {:>10}  {:>8}  {:>10}  {:>9}   {}",
                row.latency_budget_s,
                "-",
                "-",
                "(too small)",
                "-",
                match (&row.flops_model_choice, row.flops_model_ttft_s) {
                    (Some(f), Some(t)) => format!(
                        "DIFFERS: would pick N = {:.3} B, V = {:.1}, which takes {:.3} s",
                        f.llm_params, f.visual_tokens, t
                    ),
                    _ => "-".to_string(),
                }
            ),
            Some(o) => {
                let note = match (&row.flops_model_choice, row.flops_model_ttft_s, row.flops_model_agrees) {
                    (Some(_), _, Some(true)) => "same choice".to_string(),
                    (Some(f), Some(t), _) => format!(
                        "DIFFERS: N = {:.3} B, V = {:.1}, TTFT {:.3} s{}",
                        f.llm_params,
                        f.visual_tokens,
                        t,
                        if t > row.latency_budget_s { " (over the latency budget)" } else { "" }
                    ),
                    _ => "-".to_string(),
                };
                println!(
                    "{:>10.3}  {:>10.4}  {:>8.2}  {:>10.4}  {:>9.3}   {note}",
                    row.latency_budget_s, o.llm_params, o.visual_tokens, o.predicted_error, o.cost
                );
            }
        }
    }
    if rows.iter().any(|r| r.flops_model_agrees == Some(false)) {
        println!("\nThe paper's FLOPs model ignores the vision tower (a fixed cost per image), so it spends the budget differently from measured latency where marked.");
    }
    if !profile.formats.is_empty() {
        println!("\nBy weight format (each format's measured LLM rates; the table above uses the top-level rates):");
        println!(
            "{:>10}  {:>8}  {:>10}  {:>8}  {:>10}  {:>9}",
            "TTFT ≤ s", "weights", "N* (B)", "V*", "pred. err", "TTFT s"
        );
        for row in &rows {
            for c in &row.by_format {
                let best = if row.best_format.as_deref() == Some(c.weights.as_str()) { "  ← best" } else { "" };
                match &c.optimum {
                    Some(o) => println!(
                        "{:>10.3}  {:>8}  {:>10.4}  {:>8.2}  {:>10.4}  {:>9.3}{best}",
                        row.latency_budget_s, c.weights, o.llm_params, o.visual_tokens, o.predicted_error, o.cost
                    ),
                    None => println!("{:>10.3}  {:>8}  {:>10}", row.latency_budget_s, c.weights, "(too small)"),
                }
            }
        }
        println!(
            "The law's error ignores quantisation: it assumes every format scores as the scores it was fitted on."
        );
    }
    Ok(())
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

/// Most budgets one `--budget-range` table (or `--budget` list) holds.
pub const MAX_BUDGETS: usize = 1_000;

pub fn run(a: Args) -> Result<()> {
    if a.budget.len() > MAX_BUDGETS {
        return Err(UsageError(format!("--budget: {} budgets, more than {MAX_BUDGETS}", a.budget.len())).into());
    }
    if a.latency_profile.is_some() {
        return run_latency(a);
    }
    let r = a.law.resolve()?;
    let spec = spec_of(&a, &r)?;
    let budgets = if a.budget.is_empty() {
        match parse_list("--budget-range", &a.budget_range)?.as_slice() {
            [_, _, k] if *k > MAX_BUDGETS as f64 => {
                return Err(UsageError(format!(
                    "--budget-range: COUNT {k} is more than the {MAX_BUDGETS} budgets a table holds (each is an optimisation: {MAX_BUDGETS} take about ten seconds)"
                ))
                .into())
            }
            [lo, hi, k] if *lo > 0.0 && hi >= lo && *k >= 1.0 && k.fract() == 0.0 => logspace(*lo, *hi, *k as usize),
            _ => {
                return Err(UsageError(format!(
                    "--budget-range: expected LO,HI,COUNT with 0 < LO ≤ HI and a whole COUNT ≥ 1, got `{}`",
                    a.budget_range
                ))
                .into())
            }
        }
    } else {
        a.budget.clone()
    };
    let optima = budgets.iter().map(|&b| spec.optimum(&PaperCost, b)).collect::<scaling::Result<Vec<_>>>()?;
    let closed = match (r.law, r.axis) {
        (Law::Multiplicative { alpha, beta, .. }, TokenAxis::Visual) => {
            closed_form_visual_tokens(alpha, beta, a.text_tokens)
        }
        _ => None,
    };
    if a.json {
        let out = Out {
            law: r.law,
            token_axis: r.axis,
            origin: &r.origin,
            text_tokens: a.text_tokens,
            cost_model: "2·N·(Q+V) FLOPs",
            closed_form_visual_tokens: closed,
            optima,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "vlmscale frontier — law from {} (α = {:.4}, β = {:.4}), Q = {} text tokens",
        r.origin,
        r.law.alpha(),
        r.law.beta(),
        a.text_tokens
    );
    println!(
        "cost model: the paper's 2·N·(Q+V) FLOPs per query; N (billions) over {}, V over {}\n",
        spec.sizes, spec.tokens
    );
    println!("{:>12}  {:>12}  {:>10}  {:>10}  {:>12}", "budget", "N* (B)", "V*", "pred. error", "FLOPs used");
    for (b, o) in budgets.iter().zip(&optima) {
        match o {
            Some(o) => println!(
                "{b:>12.3e}  {:>12.4}  {:>10.2}  {:>10.4}  {:>12.3e}",
                o.llm_params, o.visual_tokens, o.predicted_error, o.cost
            ),
            None => println!("{b:>12.3e}  {:>12}  {:>10}  {:>10}  {:>12}", "-", "-", "(too small)", "-"),
        }
    }
    if let Some(v) = closed {
        println!(
            "\nclosed form (continuous N and V, T = V): V* = β·Q/(α−β) = {v:.2}{}",
            if v < 1.0 { " → V = 1, the fewest tokens" } else { "" }
        );
    } else if r.law.alpha() <= r.law.beta() {
        println!("\nα ≤ β: error moves at least as fast with V as with N, so visual tokens pay off (OCR-like regime).");
    }
    Ok(())
}
