//! Text pretraining of an LLM preset (`llm_pretrain`) and the two-stage VLM training that starts from
//! it (`VlmTrainConfig::{llm_init, stage1_steps}`): the manifest and its check, loading the pretrained
//! weights, stage 1 leaving the LLM bit-for-bit unchanged while the compressor and projector move,
//! stage 2 moving everything, and resume across the stage switch.
use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use synth::DatasetConfig;
use train::llm_pretrain::{pretrain_llm, verify_manifest, LlmPretrainConfig, MANIFEST_FILE};
use train::vision_pretrain::{pretrain_vision, VisionPretrainConfig};
use train::vlm_train::{train_vlm, TrainData, VlmTrainConfig, MM_PREFIX};

fn tiny_tower(dir: &Path) {
    let cfg =
        VisionPretrainConfig { images: 16, eval_images: 8, steps: 2, batch_size: 8, ..VisionPretrainConfig::default() };
    pretrain_vision(&cfg, dir, &mut |_, _, _| {}).unwrap();
}

fn tiny_llm(dir: &Path) -> LlmPretrainConfig {
    let cfg = LlmPretrainConfig {
        scenes: 20,
        fine_detail_scenes: 10,
        eval_scenes: 4,
        batch_size: 4,
        steps: 6,
        save_every: 2,
        object_ramp_steps: 0,
        questions_per_document: 0,
        lr: 2e-3,
        ..LlmPretrainConfig::new("xs")
    };
    let rep = pretrain_llm(&cfg, dir, None, "vlmscale train llm --llm xs --out tiny", &mut |_| {}).unwrap();
    assert!(rep.finished);
    cfg
}

fn weights(dir: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap()
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    let (a, b) =
        (a.flatten_all().unwrap().to_vec1::<f32>().unwrap(), b.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits())
}

fn vlm_run(tower: &Path, llm: &Path, out: &Path, stage1: usize, steps: usize) -> VlmTrainConfig {
    let mut cfg = VlmTrainConfig::new("xs", "quecc", 4, tower, out);
    cfg.data = TrainData::Generated {
        config: DatasetConfig { questions_per_family: 1, ..DatasetConfig::default() },
        images: 6,
    };
    cfg.batch_size = 4;
    cfg.steps = steps;
    cfg.save_every = 2;
    cfg.llm_init = Some(llm.to_path_buf());
    cfg.stage1_steps = stage1;
    cfg
}

#[test]
fn pretraining_writes_a_checked_manifest_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("xs");
    let cfg = tiny_llm(&dir);
    let m = verify_manifest(&dir).unwrap();
    assert_eq!(m.steps, 6);
    assert_eq!(m.config, cfg);
    assert_eq!(m.command, "vlmscale train llm --llm xs --out tiny");
    // Every Sort-of-CLEVR family and the digits are scored on held-out text (4 scenes each).
    assert_eq!(m.held_out_questions.len(), 7, "{:?}", m.held_out_questions);
    assert!(m.held_out_questions.values().all(|&n| n == 4));
    // The shipped directory has no trainer state.
    assert!(!dir.join("trainer_state.json").exists() && !dir.join("optimizer.safetensors").exists());
    // The weights are an HF Qwen2 checkpoint: `model.*` names, no projector.
    let w = weights(&dir);
    assert!(w.contains_key("model.embed_tokens.weight") && w.contains_key("model.norm.weight"));
    assert!(w.keys().all(|k| k.starts_with("model.") && !k.starts_with(MM_PREFIX)), "{:?}", w.keys());

    // Interrupted after 2 steps and resumed: the same weights bit for bit.
    let dir2 = tmp.path().join("xs2");
    let first = pretrain_llm(&cfg, &dir2, Some(2), "x", &mut |_| {}).unwrap();
    assert!(!first.finished && first.steps == 2);
    let rest = pretrain_llm(&cfg, &dir2, None, "vlmscale train llm --llm xs --out tiny", &mut |_| {}).unwrap();
    assert!(rest.finished);
    let w2 = weights(&dir2);
    assert!(w.iter().all(|(k, t)| same(t, &w2[k])), "resumed pretraining differs");

    // Rerunning a finished directory returns it; other settings are refused.
    assert!(pretrain_llm(&cfg, &dir, None, "x", &mut |_| {}).unwrap().finished);
    let other = LlmPretrainConfig { steps: 7, ..cfg.clone() };
    let err = pretrain_llm(&other, &dir, None, "x", &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("other settings"), "{err}");

    // A changed file is an error naming it, for the manifest check and for a VLM run using it.
    let cfg_path = dir.join("config.json");
    let mut text = std::fs::read_to_string(&cfg_path).unwrap();
    text.push(' ');
    std::fs::write(&cfg_path, text).unwrap();
    let err = verify_manifest(&dir).unwrap_err().to_string();
    assert!(err.contains("config.json") && err.contains("SHA-256"), "{err}");
    let tower = tmp.path().join("tower");
    tiny_tower(&tower);
    let err = train_vlm(&vlm_run(&tower, &dir, &tmp.path().join("v"), 1, 1), &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");
    std::fs::remove_file(dir.join(MANIFEST_FILE)).unwrap();
    let err = train_vlm(&vlm_run(&tower, &dir, &tmp.path().join("v"), 1, 1), &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains(MANIFEST_FILE), "{err}");
}

#[test]
fn stage1_freezes_the_llm_and_stage2_trains_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (tower, llm) = (tmp.path().join("tower"), tmp.path().join("llm"));
    tiny_tower(&tower);
    tiny_llm(&llm);
    let pretrained = weights(&llm);

    // Stage 1 only (no stage-2 steps is not allowed: one stage-2 step is compared separately).
    let s1 = tmp.path().join("s1");
    let mut cfg = vlm_run(&tower, &llm, &s1, 3, 2);
    cfg.stop_after = Some(3);
    let rep = train_vlm(&cfg, &mut |_| {}).unwrap();
    assert_eq!(rep.steps, 3);
    let after1 = weights(&s1);
    let mut llm_names = 0;
    for (k, t) in &after1 {
        if k.starts_with(MM_PREFIX) {
            continue;
        }
        llm_names += 1;
        assert!(same(t, &pretrained[k]), "stage 1 changed the frozen LLM tensor {k}");
    }
    assert_eq!(llm_names, pretrained.len(), "every pretrained tensor is in the VLM");
    assert!(after1.keys().any(|k| k.starts_with(MM_PREFIX)));

    // The compressor/projector did move: compare with a run of 0 steps' initialisation (the same
    // seeded init as step 0) by training a second VLM for one stage-1 step less.
    let s1b = tmp.path().join("s1b");
    let mut cfg_b = vlm_run(&tower, &llm, &s1b, 3, 2);
    cfg_b.stop_after = Some(2);
    train_vlm(&cfg_b, &mut |_| {}).unwrap();
    let after_b = weights(&s1b);
    assert!(
        after1.iter().filter(|(k, _)| k.starts_with(MM_PREFIX)).any(|(k, t)| !same(t, &after_b[k])),
        "stage 1 must update the projector"
    );

    // Resume into stage 2 from the stage-1 checkpoint: the LLM now moves.
    cfg.stop_after = None;
    let rep = train_vlm(&cfg, &mut |_| {}).unwrap();
    assert!(rep.finished && rep.steps == 5 && rep.resumed_from == Some(3));
    let after2 = weights(&s1);
    assert!(
        after2.iter().filter(|(k, _)| !k.starts_with(MM_PREFIX)).any(|(k, t)| !same(t, &pretrained[k])),
        "stage 2 must update the LLM"
    );

    // The same run without interruption gives the same losses (resume across the stage switch). At
    // the end of stage 1 (step 3, not a multiple of `save_every` = 2) the callback is told so once,
    // and the checkpoint it finds in the folder then is the stage-1 VLM, bit for bit the one the run
    // stopped after 3 steps saved.
    let s2 = tmp.path().join("s2");
    let mut seen = vec![];
    let straight = train_vlm(&vlm_run(&tower, &llm, &s2, 3, 2), &mut |info| {
        if info.stage1_end {
            seen.push((info.step, weights(&s2)));
        }
    })
    .unwrap();
    assert_eq!(seen.len(), 1, "stage1_end must fire once");
    assert_eq!(seen[0].0, 3);
    assert!(after1.iter().all(|(k, t)| same(t, &seen[0].1[k])), "the checkpoint at stage1_end is not the stage-1 VLM");
    for (x, y) in straight.losses.iter().zip(&rep.losses) {
        assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "losses differ: {x} vs {y}");
    }
    assert_eq!(straight.losses.len(), 5);
}

#[test]
fn a_pretrained_llm_of_another_size_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (tower, llm) = (tmp.path().join("tower"), tmp.path().join("llm"));
    tiny_tower(&tower);
    tiny_llm(&llm);
    let mut cfg = vlm_run(&tower, &llm, &tmp.path().join("v"), 1, 1);
    cfg.llm = "s".into();
    let err = train_vlm(&cfg, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("config.json") && err.contains("another LLM"), "{err}");
}

#[test]
fn the_text_curriculum_switches_from_short_to_natural_questions() {
    let tmp = tempfile::tempdir().unwrap();
    let base = LlmPretrainConfig {
        scenes: 12,
        fine_detail_scenes: 4,
        eval_scenes: 2,
        batch_size: 4,
        steps: 4,
        save_every: 4,
        object_ramp_steps: 0,
        questions_per_document: 0,
        lr: 2e-3,
        ..LlmPretrainConfig::new("xs")
    };
    let run = |k: usize, name: &str| {
        let cfg = LlmPretrainConfig { short_question_steps: k, ..base.clone() };
        pretrain_llm(&cfg, &tmp.path().join(name), None, "x", &mut |_| {}).unwrap();
        std::fs::read_to_string(tmp.path().join(name).join("losses.json")).unwrap()
    };
    let (natural, short2, short4) = (run(0, "k0"), run(2, "k2"), run(4, "k4"));
    let parse = |s: &str| serde_json::from_str::<Vec<f64>>(s).unwrap();
    let (n, s2, s4) = (parse(&natural), parse(&short2), parse(&short4));
    // Same initialisation and batch order: the short form changes the first step's loss, and the
    // staged run follows the all-short run for its 2 short steps, then leaves it.
    assert_ne!(n[0], s4[0]);
    assert_eq!(s2[..2], s4[..2]);
    assert_ne!(s2[2], s4[2]);
    let bad = LlmPretrainConfig { short_question_steps: 5, ..base };
    let err = pretrain_llm(&bad, &tmp.path().join("bad"), None, "x", &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("short_question_steps"), "{err}");
}

#[test]
fn the_object_ramp_changes_the_documents_and_resumes_across_its_stages() {
    let tmp = tempfile::tempdir().unwrap();
    let base = LlmPretrainConfig {
        scenes: 12,
        fine_detail_scenes: 4,
        eval_scenes: 2,
        batch_size: 4,
        steps: 6,
        save_every: 6,
        object_ramp_steps: 0,
        questions_per_document: 0,
        lr: 2e-3,
        ..LlmPretrainConfig::new("xs")
    };
    let losses = |name: &str| {
        let text = std::fs::read_to_string(tmp.path().join(name).join("losses.json")).unwrap();
        serde_json::from_str::<Vec<f64>>(&text).unwrap()
    };
    pretrain_llm(&base, &tmp.path().join("six"), None, "x", &mut |_| {}).unwrap();
    // Ramp over 5 steps: 1, 2, 3, 4, 5 objects, then six at step 5.
    let ramp = LlmPretrainConfig { object_ramp_steps: 5, ..base.clone() };
    pretrain_llm(&ramp, &tmp.path().join("ramp"), None, "x", &mut |_| {}).unwrap();
    // Interrupted inside the ramp and resumed: the same losses as the uninterrupted run.
    let dir = tmp.path().join("resumed");
    let first = pretrain_llm(&ramp, &dir, Some(3), "x", &mut |_| {}).unwrap();
    assert!(!first.finished && first.steps == 3);
    pretrain_llm(&ramp, &dir, None, "x", &mut |_| {}).unwrap();
    let (six, straight, resumed) = (losses("six"), losses("ramp"), losses("resumed"));
    // A one-object document is shorter and easier: the first step's loss differs from six objects'.
    assert_ne!(six[0], straight[0]);
    assert_eq!(straight.len(), 6);
    for (x, y) in straight.iter().zip(&resumed) {
        assert!((x - y).abs() <= 1e-6 * x.abs().max(1.0), "losses differ: {x} vs {y}");
    }
    let bad = LlmPretrainConfig { object_ramp_steps: 7, ..base };
    let err = pretrain_llm(&bad, &tmp.path().join("bad"), None, "x", &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("object_ramp_steps"), "{err}");
}

#[test]
fn single_turn_documents_split_every_scene_into_one_document_per_question() {
    let tmp = tempfile::tempdir().unwrap();
    let base = LlmPretrainConfig {
        scenes: 10,
        fine_detail_scenes: 3,
        eval_scenes: 2,
        batch_size: 4,
        steps: 4,
        save_every: 4,
        object_ramp_steps: 0,
        questions_per_document: 0,
        lr: 2e-3,
        ..LlmPretrainConfig::new("xs")
    };
    let documents = |cfg: &LlmPretrainConfig, name: &str| {
        let rep = pretrain_llm(cfg, &tmp.path().join(name), None, "x", &mut |_| {}).unwrap();
        rep.manifest.unwrap().documents
    };
    // Six families × one question each per Sort-of-CLEVR scene, one question per fine-detail scene.
    assert_eq!(documents(&base, "whole"), 10 + 3);
    let single = LlmPretrainConfig { questions_per_document: 1, ..base.clone() };
    assert_eq!(documents(&single, "single"), 10 * 6 + 3);
    // Four turns per document: each scene's six questions make a document of 4 and one of 2.
    let four = LlmPretrainConfig { questions_per_document: 4, ..base.clone() };
    assert_eq!(documents(&four, "four"), 10 * 2 + 3);
    // The setting is part of the run: a finished run with another value is refused.
    let err = pretrain_llm(&single, &tmp.path().join("whole"), None, "x", &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("other settings"), "{err}");
}

#[test]
fn grid_captions_pretrain_resume_bit_exactly_and_ship_their_words() {
    let tmp = tempfile::tempdir().unwrap();
    let base = LlmPretrainConfig {
        scenes: 10,
        fine_detail_scenes: 3,
        eval_scenes: 2,
        batch_size: 4,
        steps: 6,
        save_every: 6,
        questions_per_document: 1,
        object_ramp_steps: 3,
        ..LlmPretrainConfig::new("xs")
    };
    let losses = |name: &str| {
        let text = std::fs::read_to_string(tmp.path().join(name).join("losses.json")).unwrap();
        serde_json::from_str::<Vec<f64>>(&text).unwrap()
    };
    let grid = LlmPretrainConfig { caption: synth::CaptionFormat::Grid, ..base.clone() };
    let sum = LlmPretrainConfig { caption: synth::CaptionFormat::GridSum, ..base.clone() };
    pretrain_llm(&grid, &tmp.path().join("grid"), None, "x", &mut |_| {}).unwrap();
    pretrain_llm(&sum, &tmp.path().join("sum"), None, "x", &mut |_| {}).unwrap();
    let dir = tmp.path().join("sum-resumed");
    assert!(!pretrain_llm(&sum, &dir, Some(4), "x", &mut |_| {}).unwrap().finished);
    let rep = pretrain_llm(&sum, &dir, None, "x", &mut |_| {}).unwrap();
    assert_eq!(rep.manifest.unwrap().config.caption, synth::CaptionFormat::GridSum);
    for (x, y) in losses("sum").iter().zip(&losses("sum-resumed")) {
        assert!((x - y).abs() <= 1e-6 * x.abs().max(1.0), "losses differ: {x} vs {y}");
    }
    // Same documents but each patch's row and column words added to its input: other losses.
    assert_ne!(losses("grid")[0], losses("sum")[0]);
    // Each directory's tokenizer holds its caption's words.
    let vocab = |name: &str| {
        let tok = synth::load_tokenizer(&tmp.path().join(name).join("tokenizer.json")).unwrap();
        (tok.token_to_id("redcircle").is_some(), tok.token_to_id("columnseven").is_some())
    };
    assert_eq!(vocab("grid"), (true, false));
    assert_eq!(vocab("sum"), (false, true));
}

#[test]
fn continued_pretraining_starts_from_the_init_and_scores_facts() {
    let tmp = tempfile::tempdir().unwrap();
    let base_dir = tmp.path().join("xs");
    let base = tiny_llm(&base_dir);
    let before = weights(&base_dir);
    let init = base_dir.display().to_string();
    // Zero learning steps cannot be asked for, so compare against a run whose learning rate is
    // negligible: after one step at lr 1e-12 every weight is the init's to within 1e-9, while a
    // seeded initialisation differs by O(init std).
    let cont = LlmPretrainConfig { steps: 1, lr: 1e-12, fact_scenes: 12, init: Some(init.clone()), ..base.clone() };
    let dir = tmp.path().join("cont");
    let m = pretrain_llm(&cont, &dir, None, "x", &mut |_| {}).unwrap().manifest.unwrap();
    let after = weights(&dir);
    for (k, t) in &before {
        let d =
            (t - &after[k]).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-6, "{k}: moved by {d} from the init");
    }
    // The fact family is scored on held-out text (4 object_facts scenes × 1 question), beside the
    // seven others; the documents count the fact scenes.
    assert_eq!(m.held_out_questions.get("fact"), Some(&4), "{:?}", m.held_out_questions);
    assert_eq!(m.documents, 20 + 10 + 12);
    assert_eq!(m.config.init.as_deref(), Some(init.as_str()));
    // Without `init` the same settings start from the seeded initialisation instead.
    let seeded = LlmPretrainConfig { init: None, ..cont.clone() };
    pretrain_llm(&seeded, &tmp.path().join("seeded"), None, "x", &mut |_| {}).unwrap();
    let w = weights(&tmp.path().join("seeded"));
    assert!(!same(&w["model.embed_tokens.weight"], &before["model.embed_tokens.weight"]));

    // Another preset's directory, or a damaged one, is refused with its name.
    let wrong = LlmPretrainConfig { llm: "s".into(), ..cont.clone() };
    let err = pretrain_llm(&wrong, &tmp.path().join("wrong"), None, "x", &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("`xs` preset") && err.contains("`s`"), "{err}");
    let mut text = std::fs::read_to_string(base_dir.join("config.json")).unwrap();
    text.push(' ');
    std::fs::write(base_dir.join("config.json"), text).unwrap();
    let err = pretrain_llm(&cont, &tmp.path().join("damaged"), None, "x", &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");
}
