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
        let Some(Content::ObjectFacts(scene, colour, shown)) = &s.content else {
            panic!("{}: no object_facts content", s.id)
        };
        colours_seen.insert(*colour);
        assert_eq!(shown, &[*colour]);
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

/// The colour (by its RGB) and shape (by its pixel count, as above) of the one object painted.
fn painted_object(image: &image::RgbImage) -> (Colour, Shape) {
    let pixels: Vec<[u8; 3]> = image.pixels().map(|p| p.0).filter(|p| *p != BACKGROUND).collect();
    let colour = Colour::ALL.into_iter().find(|c| c.rgb() == pixels[0]).expect("a palette colour");
    let shape = match pixels.len() {
        121 => Shape::Square,
        97 => Shape::Circle,
        n => panic!("{n} painted pixels"),
    };
    (colour, shape)
}

#[test]
fn name_questions_name_the_painted_object_and_leave_the_images_alone() {
    let cfg = |name_questions| DatasetConfig {
        task: Task::ObjectFacts,
        seed: 5,
        questions_per_family: 4,
        name_questions,
        ..DatasetConfig::default()
    };
    let plain = Generator::new(cfg(0)).unwrap().generate(0..60).unwrap();
    let named = Generator::new(cfg(100)).unwrap().generate(0..60).unwrap();
    let half = Generator::new(cfg(50)).unwrap().generate(0..60).unwrap();
    let shape_word = |s: Shape| if s == Shape::Square { "rectangle" } else { "circle" };
    let mut names_in_half = 0;
    for ((p, n), h) in plain.iter().zip(&named).zip(&half) {
        assert_eq!(p.image, n.image, "{}", p.id);
        assert_eq!(p.image, h.image, "{}", p.id);
        let (colour, shape) = painted_object(&n.image);
        let expected = format!("{} {}", colour.name(), shape_word(shape));
        for qa in &n.qas {
            assert_eq!(
                (qa.family, qa.question.as_str(), qa.answer.as_str()),
                (Family::Name, "What is the object?", expected.as_str())
            );
        }
        assert!(p.qas.iter().all(|qa| qa.family == Family::Fact));
        for qa in &h.qas {
            match qa.family {
                Family::Name => {
                    names_in_half += 1;
                    assert_eq!(qa.answer, expected);
                }
                Family::Fact => assert!(qa.answer.len() == 1 && qa.answer.chars().all(|c| c.is_ascii_digit())),
                f => panic!("{f:?}"),
            }
        }
    }
    // 240 questions at 50 %: 120 ± 7.7 (binomial sd); 4.5 sd either side.
    assert!((85..=155).contains(&names_in_half), "{names_in_half} of 240");
    assert!(Task::ObjectFacts.has_family(Family::Name) && !Task::SortOfClevr.has_family(Family::Name));
    let err = Generator::new(cfg(101)).unwrap_err().to_string();
    assert!(err.contains("name_questions"), "{err}");
    // The question adds no word to the vocabulary (the shipped-vocabulary check above covers it).
    let tok = build_tokenizer(&[]).unwrap();
    let ids = tok.encode("What is the object?", false).unwrap().get_ids().to_vec();
    assert!(!ids.contains(&tok.token_to_id(UNK).unwrap()), "{ids:?}");
}

/// With `fact_objects` = k the image shows the asked object and k − 1 others of its scene (each
/// painted as the scene places it, no other object), and every question names the asked object's
/// colour; its answer is the asked object's fact, never another shown object's.
#[test]
fn several_objects_are_drawn_and_the_question_names_the_asked_one() {
    for k in [2u32, 4, 6] {
        let cfg = DatasetConfig {
            task: Task::ObjectFacts,
            seed: 11,
            questions_per_family: 3,
            fact_objects: k,
            name_questions: 30,
            ..DatasetConfig::default()
        };
        let samples = Generator::new(cfg).unwrap().generate(0..40).unwrap();
        let (mut names, mut facts) = (0, 0);
        for s in &samples {
            let Some(Content::ObjectFacts(scene, colour, shown)) = &s.content else { panic!("{}", s.id) };
            assert_eq!(shown.len(), k as usize, "{}", s.id);
            assert!(shown.contains(colour) && shown.windows(2).all(|w| (w[0] as usize) < (w[1] as usize)), "{shown:?}");
            // Each shown object's centre pixel has its colour; no pixel has a colour not shown.
            for c in Colour::ALL {
                let o = scene.object(c);
                let centre = s.image.get_pixel(o.x, o.y).0;
                if shown.contains(&c) {
                    assert_eq!(centre, c.rgb(), "{}: {c:?} at its centre", s.id);
                }
            }
            for p in s.image.pixels() {
                assert!(p.0 == BACKGROUND || shown.iter().any(|c| c.rgb() == p.0), "{}: {:?}", s.id, p.0);
            }
            let caption = s.content.as_ref().unwrap().caption(8);
            assert_eq!(caption.matches(" at row ").count(), k as usize, "{caption}");
            // On the 1 × 1 grid the one word is the asked object's, whichever objects share the cell.
            assert_eq!(
                s.content.as_ref().unwrap().grid_caption(1),
                synth::grid_caption::object_word(*colour, scene.object(*colour).shape)
            );
            let shape = scene.object(*colour).shape;
            for qa in &s.qas {
                match qa.family {
                    Family::Name => {
                        names += 1;
                        assert_eq!(qa.question, format!("What is the {} object?", colour.name()));
                        assert_eq!(qa.answer, format!("{} {}", colour.name(), shape.answer()));
                    }
                    Family::Fact => {
                        facts += 1;
                        let tail = format!(" of the {} object?", colour.name());
                        let n: u32 = qa
                            .question
                            .strip_prefix("What is number ")
                            .and_then(|r| r.strip_suffix(tail.as_str()))
                            .and_then(|n| n.parse().ok())
                            .unwrap_or_else(|| panic!("{:?}", qa.question));
                        assert_eq!(qa.answer, value(*colour, shape, n).to_string());
                    }
                    f => panic!("{f:?}"),
                }
            }
        }
        assert!(names > 10 && facts > 50, "{names} name and {facts} fact questions");
    }
    // One object per image, the default, asks about "the object" as before; 0 and 7 are refused.
    let one = Generator::new(DatasetConfig { task: Task::ObjectFacts, fact_objects: 1, ..DatasetConfig::default() });
    assert!(one.unwrap().sample(0).unwrap().qas[0].question.ends_with(" of the object?"));
    for bad in [0, 7] {
        let e =
            Generator::new(DatasetConfig { task: Task::ObjectFacts, fact_objects: bad, ..DatasetConfig::default() })
                .unwrap_err()
                .to_string();
        assert!(e.contains("fact_objects"), "{e}");
    }
}
