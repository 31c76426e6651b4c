//! The patch-grid caption: a scene written as the words of the vision tower's G×G patch grid, one
//! word per patch in row-major order — the language the tower's patch tokens speak.
//!
//! A patch holding an object's centre is the object's word (colour and shape fused:
//! `"redcircle"`, `"greenrectangle"`), a patch holding the centre of a digit's glyph is the digit,
//! and every other patch is [`EMPTY_CELL`]. These are exactly the per-patch classes the tower is
//! pretrained to predict (`train::vision_pretrain::patch_targets`, with the same cell rule
//! `cell = coordinate · G / image_size`), so an LLM pretrained on this text reads a grid of tokens
//! whose visual counterpart at V = G² is one patch token each: a projector only has to map each
//! patch token to its word, as LLaVA's projector maps CLIP features into the LLM's word space.
//! Position is carried by the word's place in the sequence (row r, column c at index r·G + c), as it
//! is for visual tokens.
//!
//! Example (G = 2): `"nothing redcircle nothing 7"`.
use crate::fine_detail::FineDetailScene;
use crate::scene::{Colour, Object, Scene, Shape};

/// The word of a patch that holds nothing.
pub const EMPTY_CELL: &str = "nothing";

/// The word of an object: colour and shape answer fused (`"redcircle"`, `"greyrectangle"`).
pub fn object_word(colour: Colour, shape: Shape) -> String {
    format!("{}{}", colour.name(), shape.answer())
}

/// The cell index (row · `grid` + column) of the point (x, y) px in an image of side `size`.
pub fn cell_of(x: u32, y: u32, size: u32, grid: u32) -> usize {
    let g = grid.max(1) as u64;
    let cell = |v: u32| (v as u64 * g / size.max(1) as u64).min(g - 1);
    (cell(y) * g + cell(x)) as usize
}

/// Every word a grid caption can hold (each also with a leading space, as it appears after the
/// first cell): the vocabulary a tokenizer needs beside `tokenizer::corpus`.
pub fn vocabulary() -> Vec<String> {
    let mut words = vec![EMPTY_CELL.to_string()];
    for colour in Colour::ALL {
        for shape in [Shape::Square, Shape::Circle] {
            words.push(object_word(colour, shape));
        }
    }
    words.into_iter().map(|w| format!("{w} {w}")).collect()
}

fn join(cells: Vec<String>) -> String {
    cells.join(" ")
}

fn place_objects<'a>(cells: &mut [String], objects: impl Iterator<Item = &'a Object>, size: u32, grid: u32) {
    for o in objects {
        cells[cell_of(o.x, o.y, size, grid)] = object_word(o.colour, o.shape);
    }
}

impl Scene {
    /// The patch-grid caption (module docs) of the objects whose colours `present` lists;
    /// `grid` 0 is treated as 1.
    pub fn grid_caption_of(&self, grid: u32, present: &[Colour]) -> String {
        let g = grid.max(1);
        let mut cells = vec![EMPTY_CELL.to_string(); (g * g) as usize];
        place_objects(
            &mut cells,
            self.objects.iter().filter(|o| present.contains(&o.colour)),
            self.config.image_size,
            g,
        );
        join(cells)
    }
}

impl FineDetailScene {
    /// The patch-grid caption (module docs): distractors, then each digit at the cell of its glyph's
    /// centre ([`FineDetailScene::digit_centres`]); `grid` 0 is treated as 1.
    pub fn grid_caption(&self, grid: u32) -> String {
        let g = grid.max(1);
        let size = self.config.image_size;
        let mut cells = vec![EMPTY_CELL.to_string(); (g * g) as usize];
        place_objects(&mut cells, self.distractors.iter(), size, g);
        for (&d, (x, y)) in self.digits.iter().zip(self.digit_centres()) {
            cells[cell_of(x, y, size, g)] = d.to_string();
        }
        join(cells)
    }
}
