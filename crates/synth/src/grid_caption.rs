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
//!
//! The grid of words leaves a patch's place in the image to its index in the sequence, which a
//! rotary-position LLM does not read as a row and a column; a patch token of the tower carries its
//! position in its content (the tower is pretrained to regress it). [`grid_sum_words`] gives each
//! patch that too: the words whose embeddings, **summed into one input vector**, stand for the patch
//! — what it holds (colour word as the questions write it and shape as the answers do, the digit, or
//! [`EMPTY_CELL`]), its row word and its column word ([`row_word`], [`column_word`]). One vector per
//! patch, as a visual token is, and each attribute a word the LLM also reads and writes.
use crate::fine_detail::FineDetailScene;
use crate::scene::{Colour, Scene, Shape};

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

/// The row word of row `r` (`"rowzero"` … `"rowseven"`, then `"row8"`…; only used in grid-sum
/// captions, never tokenized from text).
pub fn row_word(r: usize) -> String {
    format!("row{}", number_word(r))
}

/// The column word of column `c` (`"columnzero"` …).
pub fn column_word(c: usize) -> String {
    format!("column{}", number_word(c))
}

fn number_word(n: usize) -> String {
    const WORDS: [&str; 16] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "thirteen", "fourteen", "fifteen",
    ];
    WORDS.get(n).map_or_else(|| format!("x{}", "i".repeat(n)), |w| w.to_string())
}

/// What one patch holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// Nothing.
    Empty,
    /// The centre of an object.
    Object(Colour, Shape),
    /// The centre of a digit's glyph.
    Digit(u8),
}

/// The words of one patch in a grid-sum caption (module docs): `[" red", "circle", row, column]`,
/// `["4", row, column]` or `["nothing", row, column]`, as vocabulary entries (a colour with its
/// leading space, as the questions tokenize it; shape and digit bare, as answers begin).
pub fn grid_sum_words(cell: Cell, row: usize, column: usize) -> Vec<String> {
    let mut words = match cell {
        Cell::Empty => vec![EMPTY_CELL.to_string()],
        Cell::Object(colour, shape) => vec![format!(" {}", colour.name()), shape.answer().to_string()],
        Cell::Digit(d) => vec![d.to_string()],
    };
    words.push(row_word(row));
    words.push(column_word(column));
    words
}

/// The words a grid-sum caption on a `grid × grid` layout adds to the vocabulary ([`EMPTY_CELL`], the
/// row and column words; the rest are question and answer words).
pub fn grid_sum_vocabulary(grid: usize) -> Vec<String> {
    let mut words = vec![EMPTY_CELL.to_string()];
    for i in 0..grid {
        words.push(row_word(i));
        words.push(column_word(i));
    }
    words
}

/// The word-grid caption of `cells` (one word per patch, space-separated).
pub fn words_of(cells: &[Cell]) -> String {
    let words: Vec<String> = cells
        .iter()
        .map(|&c| match c {
            Cell::Empty => EMPTY_CELL.to_string(),
            Cell::Object(colour, shape) => object_word(colour, shape),
            Cell::Digit(d) => d.to_string(),
        })
        .collect();
    words.join(" ")
}

impl Scene {
    /// What each patch of a `grid × grid` layout holds, row-major, counting only the objects whose
    /// colours `present` lists (a later colour wins a shared patch, as in the tower's targets).
    pub fn grid_cells_of(&self, grid: u32, present: &[Colour]) -> Vec<Cell> {
        let g = grid.max(1);
        let mut cells = vec![Cell::Empty; (g * g) as usize];
        for o in self.objects.iter().filter(|o| present.contains(&o.colour)) {
            cells[cell_of(o.x, o.y, self.config.image_size, g)] = Cell::Object(o.colour, o.shape);
        }
        cells
    }

    /// [`Self::grid_cells_of`] the objects `shown`, where the object of colour `asked` wins any patch
    /// it shares: on a coarse grid (1 × 1, 2 × 2) the cell holds the object the question selects, as
    /// a query-conditioned visual token of that region would. An `object_facts` image's layout.
    pub fn grid_cells_asked(&self, grid: u32, shown: &[Colour], asked: Colour) -> Vec<Cell> {
        let mut cells = self.grid_cells_of(grid, shown);
        let o = self.object(asked);
        cells[cell_of(o.x, o.y, self.config.image_size, grid.max(1))] = Cell::Object(asked, o.shape);
        cells
    }

    /// The patch-grid caption (module docs) of the objects whose colours `present` lists;
    /// `grid` 0 is treated as 1.
    pub fn grid_caption_of(&self, grid: u32, present: &[Colour]) -> String {
        words_of(&self.grid_cells_of(grid, present))
    }
}

impl FineDetailScene {
    /// What each patch of a `grid × grid` layout holds, row-major: distractors, then digits.
    pub fn grid_cells(&self, grid: u32) -> Vec<Cell> {
        let g = grid.max(1);
        let size = self.config.image_size;
        let mut cells = vec![Cell::Empty; (g * g) as usize];
        for o in &self.distractors {
            cells[cell_of(o.x, o.y, size, g)] = Cell::Object(o.colour, o.shape);
        }
        for (&d, (x, y)) in self.digits.iter().zip(self.digit_centres()) {
            cells[cell_of(x, y, size, g)] = Cell::Digit(d);
        }
        cells
    }

    /// The patch-grid caption (module docs): distractors, then each digit at the cell of its glyph's
    /// centre ([`FineDetailScene::digit_centres`]); `grid` 0 is treated as 1.
    pub fn grid_caption(&self, grid: u32) -> String {
        words_of(&self.grid_cells(grid))
    }
}
