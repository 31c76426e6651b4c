//! The pretrained LLMs shipped under `models/llm/<preset>` (what `reproduce` and `train vlm
//! --llm-init` start from): each directory passes its manifest's SHA-256 check, was made by the
//! documented default command with the default recipe, and holds as many parameters as its manifest
//! and its preset say (counted from the safetensors file itself).
use std::path::PathBuf;

use candle_core::Device;
use train::llm_pretrain::{verify_manifest, LlmPretrainConfig, MANIFEST_FILE};
use train::sizes::SIZES;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/llm")
}

#[test]
fn shipped_pretrained_llms_match_their_manifests_and_the_default_recipe() {
    let mut checked = vec![];
    for size in SIZES {
        let dir = models_dir().join(size.name);
        if !dir.join(MANIFEST_FILE).is_file() {
            continue;
        }
        let m = verify_manifest(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert_eq!(m.command, format!("vlmscale train llm --llm {0} --out models/llm/{0}", size.name));
        assert_eq!(m.config, LlmPretrainConfig::new(size.name), "{}: not the default recipe", size.name);
        assert_eq!(m.steps, m.config.steps);
        let tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
        let stored: usize = tensors.values().map(|t| t.elem_count()).sum();
        assert_eq!(stored, m.parameters, "{}: parameters in the file vs the manifest", size.name);
        let vocab = tensors["model.embed_tokens.weight"].dims()[0];
        assert_eq!(m.parameters, size.num_parameters(vocab), "{}: parameters vs the preset", size.name);
        for (family, acc) in &m.held_out_accuracy {
            assert!((0.0..=1.0).contains(acc), "{}: {family} accuracy {acc}", size.name);
            assert!(m.held_out_questions[family] >= 100, "{}: {family} asked too few questions", size.name);
        }
        checked.push(size.name);
    }
    // The smallest preset is always shipped; the others as their pretraining finishes.
    assert!(checked.contains(&"xs"), "no pretrained xs under {}", models_dir().display());
}

/// The shipped LLMs continued on the world's facts (`models/llm-facts/<preset>`): each passes its
/// manifest check, was made from the shipped `models/llm/<preset>` by the documented command, and
/// scores the fact family on held-out text.
#[test]
fn llms_continued_on_facts_match_their_manifests_and_command() {
    let root = models_dir().join("../llm-facts");
    let mut checked = 0;
    for size in SIZES {
        let dir = root.join(size.name);
        if !dir.join(MANIFEST_FILE).is_file() {
            continue;
        }
        let m = verify_manifest(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let base = format!("models/llm/{}", size.name);
        assert_eq!(
            m.command,
            format!(
                "vlmscale train llm --llm {0} --out models/llm-facts/{0} --steps 9000 --object-ramp-steps 0 --fact-scenes 240000 --init {base}",
                size.name
            )
        );
        assert_eq!(m.config.init.as_deref(), Some(base.as_str()));
        assert_eq!((m.config.fact_scenes, m.steps), (240_000, 9000));
        assert!(m.held_out_questions.get("fact").is_some_and(|&n| n >= 100), "{}", size.name);
        // Same architecture and vocabulary as the LLM it continues.
        let before = verify_manifest(&models_dir().join(size.name)).unwrap();
        assert_eq!(m.parameters, before.parameters);
        assert_eq!(m.sha256["tokenizer.json"], before.sha256["tokenizer.json"]);
        checked += 1;
    }
    assert!(checked >= 2, "{checked} continued LLMs under {}", root.display());
}

/// The LLMs pretrained on the world's facts from a fresh start (`models/llm-knowledge/<preset>`, what
/// `sweeps/knowledge.toml` starts from): every preset is shipped, each passes its manifest check, was
/// made by the documented command from a fresh initialisation, and was scored on held-out fact
/// questions.
#[test]
fn knowledge_llms_match_their_manifests_and_command() {
    let root = models_dir().join("../llm-knowledge");
    for size in SIZES {
        let dir = root.join(size.name);
        let m = verify_manifest(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert_eq!(
            m.command,
            format!(
                "vlmscale train llm --llm {0} --out models/llm-knowledge/{0} --steps 4000 --scenes 0 --fine-detail-scenes 0 --object-ramp-steps 0 --fact-scenes 64000",
                size.name
            )
        );
        let mut recipe = LlmPretrainConfig::new(size.name);
        (recipe.scenes, recipe.fine_detail_scenes, recipe.fact_scenes) = (0, 0, 64_000);
        (recipe.steps, recipe.object_ramp_steps) = (4000, 0);
        assert_eq!(m.config, recipe, "{}: not the documented recipe", size.name);
        assert_eq!(m.config.init, None, "{}: must start from a fresh initialisation", size.name);
        assert_eq!(m.steps, 4000);
        assert!(m.held_out_questions.get("fact").is_some_and(|&n| n >= 100), "{}", size.name);
        // One vocabulary for every LLM of the world.
        let base = verify_manifest(&models_dir().join(size.name)).unwrap();
        assert_eq!(m.parameters, base.parameters);
        assert_eq!(m.sha256["tokenizer.json"], base.sha256["tokenizer.json"]);
    }
}
