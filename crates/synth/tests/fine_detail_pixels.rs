//! The fine-detail digits recovered from pixels by template matching against glyphs written here
//! independently (ASCII art), and a demonstration that pooling destroys them.

use synth::{Content, DatasetConfig, FineDetailConfig, FineDetailScene, Generator, Task};

/// 3×5 glyphs, `#` = ink, drawn independently of `src/font.rs`.
const GLYPHS: [&str; 10] = [
    "### #.# #.# #.# ###", // 0
    ".#. ##. .#. .#. ###", // 1
    "### ..# ### #.. ###", // 2
    "### ..# ### ..# ###", // 3
    "#.# #.# ### ..# ..#", // 4
    "### #.. ### ..# ###", // 5
    "### #.. ### #.# ###", // 6
    "### ..# ..# ..# ..#", // 7
    "### #.# ### #.# ###", // 8
    "### #.# ### ..# ###", // 9
];

fn ink(d: usize, col: u32, row: u32) -> bool {
    GLYPHS[d].split(' ').nth(row as usize).unwrap().as_bytes()[col as usize] == b'#'
}

/// Reads the black text of `img` drawn at integer `scale`: bounding box of black pixels, cut into
/// 4·scale-px cells, each matched against the templates. Also checks no colour touches the text.
fn read_digits(img: &image::RgbImage, scale: u32) -> String {
    let black: Vec<(u32, u32)> =
        img.enumerate_pixels().filter(|(_, _, p)| p.0 == [0, 0, 0]).map(|(x, y, _)| (x, y)).collect();
    assert!(!black.is_empty(), "no text drawn");
    let x0 = black.iter().map(|p| p.0).min().unwrap();
    let y0 = black.iter().map(|p| p.1).min().unwrap();
    let x1 = black.iter().map(|p| p.0).max().unwrap();
    let y1 = black.iter().map(|p| p.1).max().unwrap();
    assert_eq!(y1 - y0 + 1, 5 * scale, "text height");
    // Every glyph has ink in its first and last column, so the box width is exactly 4n−1 cells.
    let w = x1 - x0 + 1;
    assert_eq!((w + scale) % (4 * scale), 0, "text width {w}");
    let n = (w + scale) / (4 * scale);
    // A 1-px white margin around the text: distractors never touch it.
    for y in y0.saturating_sub(1)..=(y1 + 1).min(img.height() - 1) {
        for x in x0.saturating_sub(1)..=(x1 + 1).min(img.width() - 1) {
            let p = img.get_pixel(x, y).0;
            assert!(p == [0, 0, 0] || p == [255, 255, 255], "colour {p:?} at ({x},{y}) near the text");
        }
    }
    let mut out = String::new();
    for k in 0..n {
        let gx = x0 + k * 4 * scale;
        let is_ink = |col: u32, row: u32| img.get_pixel(gx + col * scale, y0 + row * scale).0 == [0, 0, 0];
        let matches: Vec<usize> =
            (0..10).filter(|&d| (0..5).all(|r| (0..3).all(|c| is_ink(c, r) == ink(d, c, r)))).collect();
        assert_eq!(matches.len(), 1, "glyph {k} matches {matches:?}");
        out.push(char::from(b'0' + matches[0] as u8));
    }
    out
}

/// The earlier free layout: 2–4 digits at scale 1, the font's spacing, any pixel position.
fn free_layout() -> FineDetailConfig {
    FineDetailConfig { glyph_scale: 1, min_digits: 2, max_digits: 4, digit_cell: 0, ..Default::default() }
}

/// Reads the digit-per-cell layout: every 10-px cell of the 8×8 grid holding black ink is one 6×10
/// glyph (scale 2) centred in it; the cells must be consecutive in one row. Returns the digits left
/// to right and the (row, first column) of the text.
fn read_cells(img: &image::RgbImage) -> (String, (u32, u32)) {
    let mut cells = vec![];
    for r in 0..8 {
        for c in 0..8 {
            let black = (0..10)
                .flat_map(|y| (0..10).map(move |x| (x, y)))
                .filter(|&(x, y)| img.get_pixel(c * 10 + x, r * 10 + y).0 == [0, 0, 0])
                .count();
            if black > 0 {
                cells.push((r, c));
            }
        }
    }
    assert!(!cells.is_empty(), "no text");
    let (row, first) = cells[0];
    for (k, &(r, c)) in cells.iter().enumerate() {
        assert_eq!((r, c), (row, first + k as u32), "digit cells must be consecutive in one row: {cells:?}");
    }
    let mut out = String::new();
    for &(r, c) in &cells {
        // Centred: 2 px of margin left and right, glyph rows fill the cell's 10 px.
        let is_ink = |col: u32, rr: u32| img.get_pixel(c * 10 + 2 + col * 2, r * 10 + rr * 2).0 == [0, 0, 0];
        let matches: Vec<usize> =
            (0..10).filter(|&d| (0..5).all(|rr| (0..3).all(|cc| is_ink(cc, rr) == ink(d, cc, rr)))).collect();
        assert_eq!(matches.len(), 1, "cell ({r},{c}) matches {matches:?}");
        out.push(char::from(b'0' + matches[0] as u8));
    }
    (out, (row, first))
}

#[test]
fn digits_read_back_cell_by_cell_in_the_default_layout() {
    let gen = Generator::new(DatasetConfig { task: Task::FineDetail, seed: 5, ..Default::default() }).unwrap();
    let mut lengths = std::collections::BTreeSet::new();
    let mut even_start_pairs = 0;
    for s in gen.generate(0..400).unwrap() {
        let qa = &s.qas[0];
        let (text, (row, col)) = read_cells(&s.image);
        assert_eq!(text, qa.answer, "{}", s.id);
        assert!(!qa.answer.starts_with('0'));
        lengths.insert(qa.answer.len());
        // The caption names the first digit's cell on the 8×8 grid.
        let Some(Content::FineDetail(scene)) = &s.content else { panic!("no scene") };
        assert!(
            scene.caption(8).starts_with(&format!("the number {} at row {row} column {col}", qa.answer)),
            "{}",
            scene.caption(8)
        );
        // No colour inside the text's cells (distractors never touch it).
        for k in 0..qa.answer.len() as u32 {
            for y in 0..10 {
                for x in 0..10 {
                    let p = s.image.get_pixel((col + k) * 10 + x, row * 10 + y).0;
                    assert!(p == [0, 0, 0] || p == [255, 255, 255], "colour {p:?} in a digit cell of {}", s.id);
                }
            }
        }
        even_start_pairs += (qa.answer.len() == 2 && col % 2 == 0) as usize;
    }
    assert_eq!(lengths.into_iter().collect::<Vec<_>>(), [2, 3]);
    // Two-digit numbers share one 2×2-pooled token when they start on an even column: about half.
    assert!((60..140).contains(&even_start_pairs), "{even_start_pairs}");
}

#[test]
fn a_glyph_larger_than_its_cell_is_refused() {
    let bad = FineDetailConfig { glyph_scale: 3, ..Default::default() };
    let err =
        Generator::new(DatasetConfig { task: Task::FineDetail, fine_detail: bad, ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("digit_cell"), "{err}");
    let wide = FineDetailConfig { max_digits: 9, ..Default::default() };
    let err =
        Generator::new(DatasetConfig { task: Task::FineDetail, fine_detail: wide, ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("digit_cell"), "{err}");
}

#[test]
fn digits_read_back_from_pixels() {
    let gen = Generator::new(DatasetConfig {
        task: Task::FineDetail,
        seed: 5,
        fine_detail: free_layout(),
        ..Default::default()
    })
    .unwrap();
    let mut lengths = std::collections::BTreeSet::new();
    let mut with_distractors = 0;
    for s in gen.generate(0..500).unwrap() {
        assert_eq!(s.qas.len(), 1);
        let qa = &s.qas[0];
        assert_eq!(qa.question, "What number is written in the image?");
        assert_eq!(qa.family, synth::Family::Digits);
        assert_eq!(read_digits(&s.image, 1), qa.answer, "{}", s.id);
        assert!(qa.answer.len() == 1 || !qa.answer.starts_with('0'));
        lengths.insert(qa.answer.len());
        with_distractors += s.image.pixels().any(|p| p.0 != [0, 0, 0] && p.0 != [255, 255, 255]) as usize;
    }
    assert_eq!(lengths.into_iter().collect::<Vec<_>>(), [2, 3, 4]);
    assert!((300..490).contains(&with_distractors), "{with_distractors} of 500 images have distractors");
}

#[test]
fn digits_read_back_at_scale_two() {
    let fine = FineDetailConfig { glyph_scale: 2, min_digits: 1, max_digits: 6, digit_cell: 0, ..Default::default() };
    let gen =
        Generator::new(DatasetConfig { task: Task::FineDetail, seed: 9, fine_detail: fine, ..Default::default() })
            .unwrap();
    for s in gen.generate(0..200).unwrap() {
        assert_eq!(read_digits(&s.image, 2), s.qas[0].answer);
    }
}

#[test]
fn glyphs_match_the_independent_templates_and_are_distinct() {
    for d in 0..10u8 {
        for r in 0..5 {
            for c in 0..3 {
                assert_eq!(synth::font::glyph_pixel(d, c, r), ink(d as usize, c, r), "digit {d} ({c},{r})");
            }
        }
    }
    for (a, ga) in GLYPHS.iter().enumerate() {
        for gb in &GLYPHS[..a] {
            assert_ne!(ga, gb);
        }
    }
}

/// Averages `img` over `cell × cell` blocks (what 2-D average pooling of a patch grid keeps at best).
fn pooled(img: &image::RgbImage, cell: u32) -> Vec<u64> {
    let mut out = Vec::new();
    for by in 0..img.height() / cell {
        for bx in 0..img.width() / cell {
            for c in 0..3 {
                out.push(
                    (0..cell)
                        .flat_map(|y| (0..cell).map(move |x| (x, y)))
                        .map(|(x, y)| img.get_pixel(bx * cell + x, by * cell + y).0[c] as u64)
                        .sum(),
                );
            }
        }
    }
    out
}

fn text_image(digits: Vec<u8>, x: u32, y: u32) -> image::RgbImage {
    let config = FineDetailConfig { max_distractors: 0, ..free_layout() };
    FineDetailScene { config, digits, x, y, distractors: vec![] }.render()
}

#[test]
fn pooling_confuses_equal_ink_glyphs() {
    // "6" and "9" (and "2" and "5") have equal ink: inside one 10-px cell of an 8×8 grid their
    // pooled values coincide although the images differ.
    for (a, b) in [(6u8, 9u8), (2, 5)] {
        let (ia, ib) = (text_image(vec![a], 12, 13), text_image(vec![b], 12, 13));
        assert_ne!(ia, ib);
        assert_eq!(pooled(&ia, 10), pooled(&ib, 10), "{a} vs {b}");
    }
    // Two-digit numbers inside one 40-px cell (V = 4 from the 8×8 grid): 69 vs 96, 25 vs 52.
    for (a, b) in [(vec![6, 9], vec![9, 6]), (vec![2, 5], vec![5, 2])] {
        let (ia, ib) = (text_image(a, 45, 50), text_image(b, 45, 50));
        assert_ne!(ia, ib);
        assert_eq!(pooled(&ia, 40), pooled(&ib, 40));
        assert_ne!(pooled(&ia, 1), pooled(&ib, 1));
    }
}

#[test]
fn fine_detail_scene_is_recorded() {
    let gen = Generator::new(DatasetConfig { task: Task::FineDetail, seed: 1, ..Default::default() }).unwrap();
    let s = gen.sample(3).unwrap();
    let Some(Content::FineDetail(scene)) = &s.content else { panic!("no scene") };
    assert_eq!(scene.answer(), s.qas[0].answer);
    assert_eq!(scene.render(), s.image);
}
