//! End to end on a tiny configuration: pretrain a tower, train a VLM, interrupt and resume, load the
//! checkpoint through the engine's `Checkpoint`, evaluate with greedy generation.
use std::path::Path;

use synth::{DatasetConfig, Generator};
use train::vision_pretrain::{pretrain_vision, VisionPretrainConfig};
use train::vlm_train::{train_vlm, TrainData, VlmTrainConfig};

fn tiny_tower(dir: &Path) {
    let cfg =
        VisionPretrainConfig { images: 16, eval_images: 8, steps: 2, batch_size: 8, ..VisionPretrainConfig::default() };
    let r = pretrain_vision(&cfg, dir, &mut |_, _, _| {}).unwrap();
    assert!(r.final_loss.is_finite());
    // The engine loads the saved tower.
    engine::vision::load_clip_tower(dir, 4, models::Mode::Inference, &candle_core::Device::Cpu).unwrap();
}

fn tiny_run(tower: &Path, out: &Path, compressor: &str) -> VlmTrainConfig {
    let mut cfg = VlmTrainConfig::new("xs", compressor, 4, tower, out);
    cfg.data = TrainData::Generated {
        config: DatasetConfig { questions_per_family: 1, ..DatasetConfig::default() },
        images: 6,
    };
    cfg.batch_size = 4;
    cfg.steps = 6;
    cfg.save_every = 2;
    cfg
}

#[test]
fn interrupted_and_resumed_run_matches_uninterrupted_and_evaluates() {
    let tmp = tempfile::tempdir().unwrap();
    let tower = tmp.path().join("tower");
    tiny_tower(&tower);

    let a = tmp.path().join("a");
    let full = train_vlm(&tiny_run(&tower, &a, "quecc"), &mut |_| {}).unwrap();
    assert!(full.finished && full.steps == 6 && full.resumed_from.is_none());

    let b = tmp.path().join("b");
    let mut cfg = tiny_run(&tower, &b, "quecc");
    cfg.stop_after = Some(3);
    let first = train_vlm(&cfg, &mut |_| {}).unwrap();
    assert!(!first.finished && first.steps == 3);
    // What a user writes beside the weights (an evaluation, notes) survives the resumed run's saves.
    std::fs::write(b.join("eval.json"), "{\"step\": 3}").unwrap();
    std::fs::create_dir(b.join("notes")).unwrap();
    std::fs::write(b.join("notes").join("run.txt"), "half way").unwrap();
    cfg.stop_after = None;
    let second = train_vlm(&cfg, &mut |_| {}).unwrap();
    assert_eq!(second.resumed_from, Some(3));
    assert!(second.finished);
    assert_eq!(std::fs::read_to_string(b.join("eval.json")).unwrap(), "{\"step\": 3}");
    assert_eq!(std::fs::read_to_string(b.join("notes").join("run.txt")).unwrap(), "half way");
    println!("uninterrupted {:?}\nresumed       {:?}", full.losses, second.losses);
    for (x, y) in full.losses.iter().zip(&second.losses) {
        assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "losses differ: {x} vs {y}");
    }

    // Changing a setting that alters the updates refuses to resume.
    let mut other = tiny_run(&tower, &b, "quecc");
    other.lr = 1e-4;
    other.steps = 8;
    assert!(matches!(train_vlm(&other, &mut |_| {}), Err(train::Error::Checkpoint { .. })));

    // The checkpoint is a LLaVA-layout directory the engine opens.
    let ck = engine::checkpoint::Checkpoint::open(&a).unwrap();
    assert_eq!(ck.multimodal_config().projector_type(), "mlp2x_gelu");
    assert!(ck.contains("model.mm_projector.0.q_proj.0.weight"));
    assert!(ck.contains("model.mm_projector.1.weight"));
    assert!(ck.contains("model.layers.1.mlp.down_proj.weight"));

    let held = Generator::new(DatasetConfig { seed: 99, ..DatasetConfig::default() }).unwrap().generate(0..2).unwrap();
    let rep = train::eval::evaluate(&a, &held, Some(9), &mut |_, _| {}).unwrap();
    assert_eq!(rep.overall.total, 9);
    assert_eq!(rep.families.values().map(|f| f.total).sum::<usize>(), 9);
    assert!((0.0..=1.0).contains(&rep.overall.accuracy));
    let path = tmp.path().join("eval.json");
    train::eval::write_report(&path, &rep).unwrap();
    let back: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(back["overall"]["total"], 9);
}

#[test]
fn every_compressor_trains_a_step_and_reloads() {
    let tmp = tempfile::tempdir().unwrap();
    let tower = tmp.path().join("tower");
    tiny_tower(&tower);
    for c in ["quecc-noquery", "tokenpacker", "avgpool"] {
        let out = tmp.path().join(c);
        let mut cfg = tiny_run(&tower, &out, c);
        cfg.steps = 1;
        let r = train_vlm(&cfg, &mut |_| {}).unwrap();
        assert!(r.final_loss.is_finite(), "{c}");
        let loaded = train::eval::load_vlm(&out).unwrap();
        assert!(!loaded.model.compressor.needs_query(), "{c}");
    }
}

#[test]
fn resume_after_a_crash_in_the_middle_of_a_checkpoint_swap() {
    let tmp = tempfile::tempdir().unwrap();
    let tower = tmp.path().join("tower");
    tiny_tower(&tower);
    let out = tmp.path().join("run");
    let mut cfg = tiny_run(&tower, &out, "avgpool");
    cfg.steps = 2;
    cfg.stop_after = Some(1);
    assert_eq!(train_vlm(&cfg, &mut |_| {}).unwrap().steps, 1);
    // A crash between the swap's two renames (`DIR` → `DIR.old`, `DIR.tmp` → `DIR`) leaves the last
    // complete checkpoint only in `DIR.old`.
    std::fs::rename(&out, tmp.path().join("run.old")).unwrap();
    cfg.stop_after = None;
    let r = train_vlm(&cfg, &mut |_| {}).unwrap();
    assert_eq!(r.resumed_from, Some(1));
    assert!(r.finished && !tmp.path().join("run.old").exists());
}
