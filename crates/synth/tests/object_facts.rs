//! The `object_facts` task: one object per image, fact questions answered from the world's table,
//! checked from the pixels and the question text; the generated tokenizer is unchanged by it.

use synth::facts::{value, FACT_PROPERTIES};
use synth::render::BACKGROUND;
use synth::tokenizer::{build_tokenizer, UNK};
use synth::{Colour, Content, DatasetConfig, Family, Generator, Shape, Task};

#[test]
fn one_object_is_drawn_and_every_answer_is_its_types_fact() {
    let cfg = DatasetConfig { task: Task::ObjectFacts, seed: 3, questions_per_family: 4, ..DatasetConfig::default() };
    let samples = Generator::new(cfg).unwrap().generate(0..40).unwrap();
    let mut colours_seen = std::collections::HashSet::new();
    for s in &samples {
        let Some(Content::ObjectFacts(scene, colour)) = &s.content else { panic!("{}: no object_facts content", s.id) };
        colours_seen.insert(*colour);
        // The pixels: every non-background pixel has the kept object's colour, and there are as many
        // as its shape covers (square 11×11 = 121, disc of radius 5 = 97; objects may not overlap
        // the border, so nothing is clipped).
        let rgb = colour.rgb();
        let mut painted = 0;
        for p in s.image.pixels() {
            if p.0 != BACKGROUND {
                assert_eq!(p.0, rgb, "{}: a pixel of another colour", s.id);
                painted += 1;
            }
        }
        let object = scene.object(*colour);
        let expected = match object.shape {
            Shape::Square => 121,
            Shape::Circle => 97,
        };
        assert_eq!(painted, expected, "{}", s.id);
        // The caption names the one object.
        let caption = s.content.as_ref().unwrap().caption(8);
        assert_eq!(caption.matches(" at row ").count(), 1, "{caption}");
        assert!(caption.starts_with(&format!("{} {}", colour.name(), object.shape.answer())), "{caption}");
        assert_eq!(s.qas.len(), 4);
        for qa in &s.qas {
            assert_eq!(qa.family, Family::Fact);
            let k: u32 = qa
                .question
                .strip_prefix("What is number ")
                .and_then(|r| r.strip_suffix(" of the object?"))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{:?}", qa.question));
            assert!(k < FACT_PROPERTIES);
            assert_eq!(qa.answer, value(*colour, object.shape, k).to_string());
        }
    }
    assert!(colours_seen.len() >= 5, "{colours_seen:?}");
    assert!(Task::ObjectFacts.has_family(Family::Fact) && !Task::SortOfClevr.has_family(Family::Fact));
    assert!(!Task::ObjectFacts.has_family(Family::Shape) && !Task::FineDetail.has_family(Family::Fact));
    assert_eq!(Task::from_name("object_facts"), Some(Task::ObjectFacts));
}

#[test]
fn the_tokenizer_covers_fact_questions_without_new_words() {
    let tok = build_tokenizer(&[]).unwrap();
    let unk = tok.token_to_id(UNK).unwrap();
    for k in [0, 7, 42, FACT_PROPERTIES - 1] {
        let q = format!("What is number {k} of the object?");
        let ids = tok.encode(q.as_str(), false).unwrap().get_ids().to_vec();
        assert!(!ids.contains(&unk), "{q:?} → {ids:?}");
        assert_eq!(tok.decode(&ids, false).unwrap(), q);
    }
    // The vocabulary is the one the shipped pretrained LLMs were made with (adding the fact question
    // to the corpus must not move any id).
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/llm/xs/tokenizer.json")).unwrap();
    let shipped: serde_json::Value = serde_json::from_str(&shipped).unwrap();
    let ours: serde_json::Value = serde_json::from_str(&tok.to_string(false).unwrap()).unwrap();
    assert_eq!(ours["model"]["vocab"], shipped["model"]["vocab"]);
    let _ = Colour::ALL;
}

#[test]
fn train_and_test_splits_ask_disjoint_halves_of_the_properties() {
    let asked = |facts: synth::FactSplit| -> std::collections::BTreeSet<u32> {
        let cfg = DatasetConfig {
            task: Task::ObjectFacts,
            seed: 1,
            questions_per_family: 3,
            facts,
            ..DatasetConfig::default()
        };
        Generator::new(cfg)
            .unwrap()
            .generate(0..300)
            .unwrap()
            .iter()
            .flat_map(|s| s.qas.iter().map(|q| q.question.split(' ').nth(3).unwrap().parse::<u32>().unwrap()))
            .collect()
    };
    let (train, test, all) =
        (asked(synth::FactSplit::Train), asked(synth::FactSplit::Test), asked(synth::FactSplit::All));
    let half = FACT_PROPERTIES / 2;
    assert!(train.iter().all(|&k| k < half) && test.iter().all(|&k| (half..FACT_PROPERTIES).contains(&k)));
    // 900 draws from 100 properties cover nearly all of them; `all` reaches both halves.
    assert!(train.len() > 95 && test.len() > 95, "{} {}", train.len(), test.len());
    assert!(all.iter().any(|&k| k < half) && all.iter().any(|&k| k >= half));
    // The default split serialises as before (no `facts` key), so earlier fingerprints still match.
    let v = serde_json::to_value(DatasetConfig::default()).unwrap();
    assert!(v.get("facts").is_none(), "{v}");
    let v = serde_json::to_value(DatasetConfig { facts: synth::FactSplit::Test, ..DatasetConfig::default() }).unwrap();
    assert_eq!(v["facts"], "test");
}
