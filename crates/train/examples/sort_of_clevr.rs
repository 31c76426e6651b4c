//! The documented Sort-of-CLEVR configuration, end to end, until the CLI wires `vlmscale train`:
//!
//! ```text
//! cargo run --release -p train --example sort_of_clevr -- pretrain TOWER_DIR [STEPS]
//! cargo run --release -p train --example sort_of_clevr -- train TOWER_DIR OUT_DIR LLM COMPRESSOR V STEPS [IMAGES]
//! cargo run --release -p train --example sort_of_clevr -- eval OUT_DIR REPORT.json [IMAGES]
//! cargo run --release -p train --example sort_of_clevr -- bench COMPRESSOR V BATCH STEPS [EXPORT_DIR]
//! ```
use std::path::Path;
use std::time::Instant;

use synth::{DatasetConfig, Generator};
use train::eval::{evaluate, write_report};
use train::vision_pretrain::{pretrain_vision, VisionPretrainConfig};
use train::vlm_train::{train_vlm, TrainData, VlmTrainConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().ok_or(format!("missing argument {i}"));
    let t0 = Instant::now();
    match arg(0)?.as_str() {
        "pretrain" => {
            let mut cfg = VisionPretrainConfig::default();
            if let Ok(s) = arg(2) {
                cfg.steps = s.parse()?;
            }
            let r = pretrain_vision(&cfg, Path::new(&arg(1)?), &mut |s, n, l| {
                if s % 25 == 0 || s == n {
                    eprintln!("pretrain step {s}/{n} loss {l:.4} ({:.0} s)", t0.elapsed().as_secs_f64());
                }
            })?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        "train" => {
            let mut cfg = VlmTrainConfig::new(&arg(3)?, &arg(4)?, arg(5)?.parse()?, Path::new(&arg(1)?), Path::new(&arg(2)?));
            cfg.steps = arg(6)?.parse()?;
            if let Ok(n) = arg(7) {
                if let TrainData::Generated { images, .. } = &mut cfg.data {
                    *images = n.parse()?;
                }
            }
            let r = train_vlm(&cfg, &mut |s| {
                if s.step % 25 == 0 || s.step == s.total {
                    eprintln!(
                        "step {}/{} loss {:.4} lr {:.2e} |g| {:.3} {:.1} samples/s ({:.0} s)",
                        s.step, s.total, s.loss, s.lr, s.grad_norm, s.samples_per_s, t0.elapsed().as_secs_f64()
                    );
                }
            })?;
            let mut v = serde_json::to_value(&r)?;
            v["losses"] = serde_json::Value::Null;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        "eval" => {
            let n: u64 = arg(3).ok().map(|s| s.parse()).transpose()?.unwrap_or(200);
            let held = Generator::new(DatasetConfig { seed: 7_777, questions_per_family: 1, ..DatasetConfig::default() })?
                .generate(0..n)?;
            let r = evaluate(Path::new(&arg(1)?), &held, None, &mut |d, t| {
                if d % 200 == 0 || d == t {
                    eprintln!("eval {d}/{t}");
                }
            })?;
            write_report(Path::new(&arg(2)?), &r)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        "bench" => {
            // bench COMPRESSOR V BATCH STEPS
            let cfg = train::bench::BenchConfig {
                compressor: arg(1)?,
                visual_tokens: arg(2)?.parse()?,
                batch_size: arg(3)?.parse()?,
                ..Default::default()
            };
            let dir = args.get(5).map(Path::new);
            let rows = train::bench::bench_train(&cfg, &["xs", "s", "m", "l"], arg(4)?.parse()?, dir, &mut |_, _, _| {})?;
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        other => return Err(format!("unknown stage {other}").into()),
    }
    eprintln!("wall {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}
