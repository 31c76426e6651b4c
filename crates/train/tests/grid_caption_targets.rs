//! The patch-grid caption a text-pretrained LLM reads and the per-patch classes the vision tower is
//! pretrained to predict describe every patch alike (two implementations: `synth::grid_caption`
//! and `train::vision_pretrain::{patch_targets, fine_detail_targets}`), on generated scenes.
use synth::{Colour, Content, DatasetConfig, Generator, Shape, Task};
use train::vision_pretrain::{fine_detail_targets, object_facts_targets, patch_targets, DIGIT_CLASS};

/// The word of a tower class (`train::vision_pretrain::PATCH_CLASSES`'s documented numbering).
fn word_of(class: u32) -> String {
    if class == 0 {
        return "nothing".into();
    }
    if class >= DIGIT_CLASS {
        return (class - DIGIT_CLASS).to_string();
    }
    let k = (class - 1) as usize;
    let shape = if k.is_multiple_of(2) { Shape::Square } else { Shape::Circle };
    format!("{}{}", Colour::ALL[k / 2].name(), shape.answer())
}

#[test]
fn every_patch_word_is_the_towers_patch_class() {
    for task in Task::ALL {
        let generator = Generator::new(DatasetConfig { task, seed: 7, ..DatasetConfig::default() }).unwrap();
        let mut occupied = 0;
        for i in 0..200 {
            let (content, _) = generator.draw(i).unwrap();
            let (classes, _, _) = match &content {
                Content::SortOfClevr(s) => patch_targets(s, 8),
                Content::FineDetail(s) => fine_detail_targets(s, 8),
                Content::ObjectFacts(s, _, shown) => object_facts_targets(s, shown, 8),
            };
            let caption = content.grid_caption(8);
            let words: Vec<&str> = caption.split(' ').collect();
            assert_eq!(words.len(), 64, "{task:?} scene {i}");
            for (p, (&class, word)) in classes.iter().zip(&words).enumerate() {
                assert_eq!(word_of(class), *word, "{task:?} scene {i}, patch {p}");
                occupied += usize::from(class != 0);
            }
        }
        // Not vacuous: Sort-of-CLEVR scenes hold 6 objects, fine-detail ones 2–3 digits, object-facts
        // images one object.
        let least = if task == Task::ObjectFacts { 200 } else { 200 * 2 };
        assert!(occupied >= least, "{task:?}: {occupied} occupied patches");
    }
}
