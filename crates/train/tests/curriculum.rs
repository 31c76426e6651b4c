//! The staged curriculum (`VlmTrainConfig::short_question_steps`): the short-form examples' tokens,
//! the switch from the short form to natural questions at the configured step, resume across the
//! switch, and the settings' validation.
use std::path::Path;

use synth::{DatasetConfig, Family};
use train::batch::ConversationEncoder;
use train::vision_pretrain::{pretrain_vision, VisionPretrainConfig};
use train::vlm_train::{train_vlm, TrainData, VlmTrainConfig};

fn tiny_tower(dir: &Path) {
    let cfg =
        VisionPretrainConfig { images: 16, eval_images: 8, steps: 2, batch_size: 8, ..VisionPretrainConfig::default() };
    pretrain_vision(&cfg, dir, &mut |_, _, _| {}).unwrap();
}

fn tiny_run(tower: &Path, out: &Path, short_question_steps: usize) -> VlmTrainConfig {
    let mut cfg = VlmTrainConfig::new("xs", "quecc", 4, tower, out);
    cfg.data = TrainData::Generated {
        config: DatasetConfig { questions_per_family: 1, ..DatasetConfig::default() },
        images: 6,
    };
    cfg.batch_size = 4;
    cfg.steps = 6;
    cfg.save_every = 2;
    cfg.short_question_steps = short_question_steps;
    cfg
}

#[test]
fn short_example_is_visual_tokens_then_keyword_and_colour() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tokenizer.json");
    synth::save_tokenizer(&synth::build_tokenizer(&[]).unwrap(), &path).unwrap();
    let enc = ConversationEncoder::new(&path).unwrap();
    let tok = enc.tokenizer().inner();
    let decode = |ids: &[u32]| tok.decode(ids, false).unwrap();

    let q = "<image>\nHow many objects have the same shape as the grey object?";
    let short = enc.short_example(3, q, "4", Family::Count).unwrap();
    assert_eq!(short.image, 3);
    assert!(short.prefix.is_empty(), "no template before the visual tokens");
    assert_eq!(decode(&short.suffix), " many grey");
    assert_eq!(short.query, short.suffix);
    assert_eq!(decode(&short.answer), "4<|im_end|>");

    // The natural example of the same question keeps the ChatML template around the question.
    let natural = enc.example(3, q, "4", Family::Count).unwrap();
    assert!(decode(&natural.prefix).starts_with("<|im_start|>system"));
    assert!(decode(&natural.suffix).contains("same shape as the grey object?"));
    assert_eq!(natural.answer, short.answer);

    // A question naming no colour has no short form.
    let err = enc.short_example(0, "What is the shape of the object?", "circle", Family::Shape).unwrap_err();
    assert!(err.to_string().contains("colour"), "{err}");
}

#[test]
fn the_switch_happens_at_the_configured_step_and_resumes_across_it() {
    let tmp = tempfile::tempdir().unwrap();
    let tower = tmp.path().join("tower");
    tiny_tower(&tower);

    let all_short = train_vlm(&tiny_run(&tower, &tmp.path().join("k6"), 6), &mut |_| {}).unwrap();
    let natural = train_vlm(&tiny_run(&tower, &tmp.path().join("k0"), 0), &mut |_| {}).unwrap();
    let staged = train_vlm(&tiny_run(&tower, &tmp.path().join("k3"), 3), &mut |_| {}).unwrap();
    println!("short   {:?}\nnatural {:?}\nstaged  {:?}", all_short.losses, natural.losses, staged.losses);
    // Same initialisation and batch order: the first step already differs between the two forms
    // (different inputs, same targets) …
    assert_ne!(all_short.losses[0], natural.losses[0]);
    // … the staged run follows the short-form run exactly for 3 steps, then leaves it.
    assert_eq!(staged.losses[..3], all_short.losses[..3]);
    assert_ne!(staged.losses[3], all_short.losses[3]);

    // Interrupted before the switch and resumed, it replays the same losses.
    let out = tmp.path().join("k3b");
    let mut cfg = tiny_run(&tower, &out, 3);
    cfg.stop_after = Some(2);
    assert_eq!(train_vlm(&cfg, &mut |_| {}).unwrap().steps, 2);
    cfg.stop_after = None;
    let resumed = train_vlm(&cfg, &mut |_| {}).unwrap();
    assert_eq!(resumed.resumed_from, Some(2));
    for (x, y) in staged.losses.iter().zip(&resumed.losses) {
        assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "losses differ: {x} vs {y}");
    }

    // A different switch step is a different run: no resume.
    let other = tiny_run(&tower, &out, 4);
    assert!(matches!(train_vlm(&other, &mut |_| {}), Err(train::Error::Checkpoint { .. })));
}

#[test]
fn more_short_steps_than_steps_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    // The tower is never read: the settings are checked first.
    let cfg = tiny_run(&tmp.path().join("no-tower"), &tmp.path().join("out"), 7);
    let err = train_vlm(&cfg, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("short_question_steps"), "{err}");
}

#[test]
fn the_image_object_ramp_changes_the_inputs_and_resumes_across_its_stages() {
    let tmp = tempfile::tempdir().unwrap();
    let tower = tmp.path().join("tower");
    tiny_tower(&tower);
    let run = |name: &str, ramp: usize| {
        let mut cfg = tiny_run(&tower, &tmp.path().join(name), 0);
        cfg.object_ramp_steps = ramp;
        cfg
    };
    let six = train_vlm(&run("six", 0), &mut |_| {}).unwrap();
    // Ramp over 5 steps: 1, 2, 3, 4, 5 objects, then six at step 5.
    let straight = train_vlm(&run("ramp", 5), &mut |_| {}).unwrap();
    let mut first = run("resumed", 5);
    first.stop_after = Some(3);
    assert!(!train_vlm(&first, &mut |_| {}).unwrap().finished);
    let resumed = train_vlm(&run("resumed", 5), &mut |_| {}).unwrap();
    // One object per image: other images and questions than the full scenes'.
    assert_ne!(six.losses[0], straight.losses[0]);
    assert_eq!(straight.losses.len(), 6);
    for (x, y) in straight.losses.iter().zip(&resumed.losses) {
        assert!((x - y).abs() <= 1e-6 * x.abs().max(1.0), "losses differ: {x} vs {y}");
    }
    // More ramp steps than steps are refused by name.
    let err = train_vlm(&run("bad", 7), &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("object_ramp_steps"), "{err}");
}

#[test]
fn a_reduced_image_shows_only_its_present_objects() {
    use synth::{render_scene, render_scene_of, Colour};
    let generator = synth::Generator::new(DatasetConfig::default()).unwrap();
    let (content, _) = generator.draw(0).unwrap();
    let synth::Content::SortOfClevr(scene) = content else { panic!("not a scene") };
    let full = render_scene(&scene);
    let red_only = render_scene_of(&scene, &[Colour::Red]);
    let background = *red_only.get_pixel(0, 0);
    // The red object's centre keeps its colour; the green one's centre is background now.
    let (r, g) = (scene.object(Colour::Red), scene.object(Colour::Green));
    assert_eq!(red_only.get_pixel(r.x, r.y), full.get_pixel(r.x, r.y));
    assert_ne!(full.get_pixel(g.x, g.y), &background);
    assert_eq!(red_only.get_pixel(g.x, g.y), &background);
}

#[test]
fn a_mixture_is_its_parts_in_order_and_takes_the_object_ramp() {
    let soc = DatasetConfig { questions_per_family: 1, ..DatasetConfig::default() };
    let facts = DatasetConfig {
        task: synth::Task::ObjectFacts,
        seed: 1,
        facts: synth::FactSplit::Train,
        ..DatasetConfig::default()
    };
    let mix = TrainData::Mixture(vec![(soc, 3), (facts, 4)]).load().unwrap();
    assert_eq!(mix.len(), 7);
    let tasks: Vec<_> = mix.iter().map(|s| s.task).collect();
    assert_eq!(tasks[..3], [synth::Task::SortOfClevr; 3]);
    assert_eq!(tasks[3..], [synth::Task::ObjectFacts; 4]);
    // Each part is image 0, 1, … of its own dataset: the facts part starts at its image 0.
    let alone = synth::Generator::new(facts).unwrap().generate(0..1).unwrap();
    assert_eq!(mix[3].qas.len(), alone[0].qas.len());
    assert_eq!(mix[3].qas[0].question, alone[0].qas[0].question);
    assert_eq!(mix[3].qas[0].answer, alone[0].qas[0].answer);
    // Only the training half of the properties is asked.
    for s in &mix[3..] {
        for qa in &s.qas {
            let k: u32 = qa.question.split_whitespace().find_map(|w| w.parse().ok()).expect("a property number");
            assert!(k < synth::facts::FACT_PROPERTIES / 2, "{}", qa.question);
        }
    }

    // The object ramp runs over a mixture (the facts images have their scene too).
    let tmp = tempfile::tempdir().unwrap();
    let tower = tmp.path().join("tower");
    tiny_tower(&tower);
    let mut cfg = tiny_run(&tower, &tmp.path().join("mix"), 0);
    cfg.data = TrainData::Mixture(vec![(soc, 4), (facts, 4)]);
    cfg.object_ramp_steps = 4;
    let rep = train_vlm(&cfg, &mut |_| {}).unwrap();
    assert_eq!(rep.losses.len(), 6);
    assert!(rep.losses.iter().all(|l| l.is_finite()));
}
