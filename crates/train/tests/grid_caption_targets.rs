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
    // Every task, and object-facts images with all six objects (the asked one wins a shared patch in
    // both the caption and the targets).
    let configs = Task::ALL.map(|task| DatasetConfig { task, seed: 7, ..DatasetConfig::default() });
    let six = DatasetConfig { task: Task::ObjectFacts, seed: 7, fact_objects: 6, ..DatasetConfig::default() };
    for config in configs.into_iter().chain([six]) {
        let task = config.task;
        let generator = Generator::new(config).unwrap();
        let mut occupied = 0;
        for i in 0..200 {
            let (content, _) = generator.draw(i).unwrap();
            let (classes, _, _) = match &content {
                Content::SortOfClevr(s) => patch_targets(s, 8),
                Content::FineDetail(s) => fine_detail_targets(s, 8),
                Content::ObjectFacts(s, asked, shown) => object_facts_targets(s, shown, *asked, 8),
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
        // images one object (or six).
        let least = if config.fact_objects == 1 && task == Task::ObjectFacts { 200 } else { 200 * 2 };
        assert!(occupied >= least, "{task:?}: {occupied} occupied patches");
    }
}

/// Two shown objects in one patch: the asked object's word is the patch's in the caption and in the
/// tower's targets, whichever colour comes later (the rule of `synth::Scene::grid_cells_asked`).
#[test]
fn the_asked_object_wins_a_shared_patch_in_targets_and_caption() {
    let generator =
        Generator::new(DatasetConfig { task: Task::ObjectFacts, seed: 7, fact_objects: 2, ..DatasetConfig::default() })
            .unwrap();
    for i in 0..50 {
        let (content, _) = generator.draw(i).unwrap();
        let Content::ObjectFacts(mut scene, asked, shown) = content else { panic!("object facts") };
        let other = *shown.iter().find(|&&c| c != asked).unwrap();
        // Move the other object into the asked one's patch (1 px to the side, same 10-px cell).
        let a = *scene.object(asked);
        let o = scene.objects.iter_mut().find(|o| o.colour == other).unwrap();
        (o.x, o.y) = (if a.x % 10 == 9 { a.x - 1 } else { a.x + 1 }, a.y);
        let word = format!("{}{}", asked.name(), a.shape.answer());
        let patch = (a.y / 10 * 8 + a.x / 10) as usize;
        let (classes, _, _) = object_facts_targets(&scene, &shown, asked, 8);
        assert_eq!(word_of(classes[patch]), word, "scene {i}");
        let moved = Content::ObjectFacts(scene, asked, shown.clone());
        assert_eq!(moved.grid_caption(8).split(' ').nth(patch), Some(word.as_str()), "scene {i}");
        assert_eq!(moved.grid_caption(1), word, "scene {i}");
    }
}
