//! The patch-grid caption: one word per patch of the 8×8 grid of an 80-px image (10-px cells).
//! Expected cells are worked out by hand from the coordinates below.
use synth::grid_caption::{vocabulary, EMPTY_CELL};
use synth::{Colour, FineDetailConfig, FineDetailScene, Object, Scene, SceneConfig, Shape};

/// Row-major words with `words[(row, column)]` set, "nothing" elsewhere.
fn expected(cells: &[(usize, usize, &str)]) -> String {
    let mut words = vec!["nothing"; 64];
    for &(r, c, w) in cells {
        words[r * 8 + c] = w;
    }
    words.join(" ")
}

fn scene() -> Scene {
    let at = |colour, shape, x, y| Object { colour, shape, x, y };
    Scene {
        config: SceneConfig::default(),
        objects: [
            at(Colour::Red, Shape::Square, 10, 10),
            at(Colour::Green, Shape::Circle, 70, 10),
            at(Colour::Blue, Shape::Circle, 20, 20),
            at(Colour::Orange, Shape::Square, 70, 70),
            at(Colour::Grey, Shape::Square, 40, 60),
            at(Colour::Yellow, Shape::Circle, 15, 79),
        ],
    }
}

#[test]
fn each_object_is_one_word_at_the_cell_of_its_centre() {
    let s = scene();
    assert_eq!(
        s.grid_caption_of(8, &Colour::ALL),
        expected(&[
            (1, 1, "redrectangle"),
            (1, 7, "greencircle"),
            (2, 2, "bluecircle"),
            (7, 7, "orangerectangle"),
            (6, 4, "greyrectangle"),
            (7, 1, "yellowcircle"),
        ])
    );
    // The curriculum's reduced scene leaves the other cells empty.
    assert_eq!(
        s.grid_caption_of(8, &[Colour::Green, Colour::Grey]),
        expected(&[(1, 7, "greencircle"), (6, 4, "greyrectangle")])
    );
    // A 2×2 grid (40-px cells): red and blue share the top-left cell, orange and grey (40, 60) the
    // bottom-right one; the later word in colour order stays (blue, grey).
    assert_eq!(s.grid_caption_of(2, &Colour::ALL), "bluecircle greencircle yellowcircle greyrectangle");
}

#[test]
fn each_digit_sits_at_the_cell_of_its_glyph_centre() {
    // Default layout: glyphs 6×10 px (scale 2) at a 10-px pitch; "407" from (20, 30): centres
    // (23, 35), (33, 35), (43, 35) → row 3, columns 2, 3, 4. Distractor at (65, 65) → row 6, column 6.
    let s = FineDetailScene {
        config: FineDetailConfig::default(),
        digits: vec![4, 0, 7],
        x: 20,
        y: 30,
        distractors: vec![Object { colour: Colour::Red, shape: Shape::Square, x: 65, y: 65 }],
    };
    assert_eq!(s.digit_centres(), vec![(23, 35), (33, 35), (43, 35)]);
    assert_eq!(s.grid_caption(8), expected(&[(3, 2, "4"), (3, 3, "0"), (3, 4, "7"), (6, 6, "redrectangle")]));
}

#[test]
fn the_vocabulary_covers_every_word_a_caption_can_hold_and_the_tokenizer_keeps_them_whole() {
    let words = vocabulary();
    // "nothing" and 6 colours × 2 shapes, each as "w w" (bare and after a space).
    assert_eq!(words.len(), 13);
    assert!(words.contains(&format!("{EMPTY_CELL} {EMPTY_CELL}")));
    let tok = synth::build_tokenizer(&words).unwrap();
    let text = scene().grid_caption_of(8, &Colour::ALL);
    let ids = tok.encode(text.as_str(), false).unwrap();
    // One token per cell (digits and words alike), none unknown.
    assert_eq!(ids.get_ids().len(), 64);
    let unk = tok.token_to_id(synth::tokenizer::UNK).unwrap();
    assert!(!ids.get_ids().contains(&unk));
}

#[test]
fn a_grid_sum_patch_is_its_content_row_and_column_words() {
    use synth::grid_caption::{grid_sum_vocabulary, grid_sum_words, Cell};
    let s = scene();
    let cells = s.grid_cells_of(8, &Colour::ALL);
    // Red square at (10, 10): row 1, column 1 (index 9); grey square at (40, 60): row 6, column 4.
    assert_eq!(cells[9], Cell::Object(Colour::Red, Shape::Square));
    assert_eq!(grid_sum_words(cells[9], 1, 1), [" red", "rectangle", "rowone", "columnone"]);
    assert_eq!(grid_sum_words(cells[6 * 8 + 4], 6, 4), [" grey", "rectangle", "rowsix", "columnfour"]);
    assert_eq!(grid_sum_words(cells[0], 0, 0), ["nothing", "rowzero", "columnzero"]);
    assert_eq!(grid_sum_words(Cell::Digit(7), 3, 4), ["7", "rowthree", "columnfour"]);
    // Every word of every patch of generated scenes is one vocabulary entry of a tokenizer built
    // with the grid-sum words (colours as the questions tokenize them, shapes and digits as answers).
    let tok = synth::build_tokenizer(&grid_sum_vocabulary(8)).unwrap();
    for task in [synth::Task::SortOfClevr, synth::Task::FineDetail] {
        let generator = synth::Generator::new(synth::DatasetConfig { task, seed: 3, ..Default::default() }).unwrap();
        for i in 0..50 {
            let (content, _) = generator.draw(i).unwrap();
            for (p, &cell) in content.grid_cells(8).iter().enumerate() {
                for w in grid_sum_words(cell, p / 8, p % 8) {
                    assert!(tok.token_to_id(&w).is_some(), "{w:?} is not in the vocabulary");
                }
            }
        }
    }
    // The question's colour token is the patch's colour word.
    let q = tok.encode("What shape is the red object?", false).unwrap();
    assert!(q.get_ids().contains(&tok.token_to_id(" red").unwrap()));
}
