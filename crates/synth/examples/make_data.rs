//! Generates a dataset in memory, reports generation speed, and optionally writes it (PNG + JSONL)
//! and the tokenizer. Stand-in for `vlmscale data make` until the CLI wires it.
//!
//! `cargo run -p vlmscale-synth --profile test --example make_data -- TASK N SEED [OUT_DIR]`
//! (TASK = sort_of_clevr | fine_detail).

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: make_data TASK N SEED [OUT_DIR]".into());
    }
    let task = synth::Task::from_name(&args[1]).ok_or("TASK must be sort_of_clevr or fine_detail")?;
    let n: u64 = args[2].parse()?;
    let seed: u64 = args[3].parse()?;
    let generator = synth::Generator::new(synth::DatasetConfig { task, seed, ..Default::default() })?;

    let t = Instant::now();
    let samples = generator.generate(0..n)?;
    let dt = t.elapsed().as_secs_f64();
    let questions: usize = samples.iter().map(|s| s.qas.len()).sum();
    println!(
        "{n} images, {questions} questions in {dt:.3} s: {:.0} images/s, {:.0} questions/s ({} rayon threads)",
        n as f64 / dt,
        questions as f64 / dt,
        rayon::current_num_threads()
    );
    let t = Instant::now();
    let one = (0..n.min(2000)).map(|i| generator.sample(i)).collect::<Result<Vec<_>, _>>()?;
    let dt = t.elapsed().as_secs_f64();
    println!("single thread: {:.0} images/s", one.len() as f64 / dt);

    if let Some(dir) = args.get(4) {
        let dir = std::path::Path::new(dir);
        let t = Instant::now();
        let jsonl = synth::write_dataset(dir, &format!("{}_s{seed}", task.name()), &samples)?;
        println!("wrote {} in {:.2} s", jsonl.display(), t.elapsed().as_secs_f64());
        let tokenizer = synth::build_tokenizer(&[])?;
        synth::save_tokenizer(&tokenizer, &dir.join("tokenizer.json"))?;
        synth::tokenizer::save_tokenizer_config(&dir.join("tokenizer_config.json"))?;
        println!(
            "wrote {} ({} tokens) and tokenizer_config.json",
            dir.join("tokenizer.json").display(),
            tokenizer.get_vocab_size(true)
        );
    }
    Ok(())
}
