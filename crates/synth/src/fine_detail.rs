//! The fine-detail task: read a short number written in the image, among distractor shapes.
//!
//! It plays the role of the paper's OCR benchmarks (TextVQA, DocVQA, …; paper §1 and Figure 3),
//! where the compute-optimal number of visual tokens is larger than for reasoning: the answer is a
//! string of characters, each a small region of the image, and every character must reach the LLM.
//!
//! Default layout (`digit_cell` = 10, the tower's patch size): a number of 2–3 digits, each glyph
//! 6×10 px (the 3×5 [`crate::font`] at scale 2) centred in its own 10-px cell, the digits in
//! consecutive cells of one row from a random cell, plus 0–4 Sort-of-CLEVR shapes in random colours
//! as distractors (never touching the text). Why it wants visual tokens, and why it is learnable:
//! * at V = 64 (the full 8×8 grid) every digit is one patch token — the reading a small model can
//!   learn, and that the vision tower is pretrained to expose (`train::vision_pretrain` classifies
//!   the digit of each patch);
//! * with fewer tokens several characters share one token: a 2×2 pooled or windowed token (V = 16)
//!   covers two adjacent digits whenever the number starts on an even column (and always for three
//!   digits), a 4×4 one (V = 4) or the single token (V = 1) the whole number — the token must carry
//!   two or three glyph identities *and their order*, where a Sort-of-CLEVR answer needs one object's
//!   colour and rough position; and a query cannot help, the question is always the same;
//! * the 90 (2 digits) + 900 (3 digits) possible answers leave no prior to fall back on.
//!
//! `digit_cell` = 0 gives the earlier layout: the string drawn with the font's spacing at any pixel
//! position (2–4 digits at scale 1, 1-px strokes spread over one or two patches), which a tower
//! pretrained without digits could not read at any V (kept for the text corpus and experiments).

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::font;
use crate::render::{draw_object, BACKGROUND};
use crate::scene::{Colour, Object, SceneConfig, Shape};

/// The text colour (black: distinct from every Sort-of-CLEVR colour and from the white background).
pub const TEXT_RGB: [u8; 3] = [0, 0, 0];

/// Layout of fine-detail images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FineDetailConfig {
    /// Image side in px (80 by default, the same 8×8 grid of 10-px patches as Sort-of-CLEVR).
    pub image_size: u32,
    /// Fewest digits in the number (≥ 1).
    pub min_digits: usize,
    /// Most digits in the number (≥ `min_digits`).
    pub max_digits: usize,
    /// Integer upscaling of the 3×5 font (1 = 3×5 px glyphs).
    pub glyph_scale: u32,
    /// Most distractor shapes; the count is uniform in `0..=max_distractors`. A distractor that
    /// cannot be placed within 100 draws is dropped.
    pub max_distractors: usize,
    /// Distractor half-size in px (square `(2h+1)²`, circle radius `h`), as Sort-of-CLEVR objects.
    pub distractor_half_size: u32,
    /// 0: the number is drawn as one string with the font's spacing at any pixel position. `P > 0`:
    /// one digit per `P × P` cell of the image's cell grid (P = the tower's patch size aligns each
    /// digit with one patch), the digits in consecutive cells of one row starting at a random cell,
    /// each glyph centred in its cell — written text whose characters each fill a patch, so reading
    /// it needs one visual token per character (see the module docs).
    pub digit_cell: u32,
}

impl Default for FineDetailConfig {
    fn default() -> Self {
        FineDetailConfig {
            image_size: 80,
            min_digits: 2,
            max_digits: 3,
            glyph_scale: 2,
            max_distractors: 4,
            distractor_half_size: 5,
            digit_cell: 10,
        }
    }
}

impl FineDetailConfig {
    /// The default layout with numbers of `min_digits..=max_digits` digits (not validated: see
    /// [`Self::validate`]).
    pub fn with_digits(min_digits: usize, max_digits: usize) -> FineDetailConfig {
        FineDetailConfig { min_digits, max_digits, ..FineDetailConfig::default() }
    }

    /// Checks the fields. Errors: [`Error::Config`] naming the field (no digits, `min > max`, more
    /// than 32 digits, scale 0 or > 16, text wider than the image, bad distractor size).
    pub fn validate(&self) -> Result<()> {
        if self.min_digits == 0 || self.max_digits > 32 {
            return Err(Error::config(
                "min_digits",
                format!("digits must be within 1..=32, got {}..={}", self.min_digits, self.max_digits),
            ));
        }
        if self.min_digits > self.max_digits {
            return Err(Error::config(
                "max_digits",
                format!("{} is below min_digits {}", self.max_digits, self.min_digits),
            ));
        }
        if self.glyph_scale == 0 || self.glyph_scale > 16 {
            return Err(Error::config("glyph_scale", format!("{} is outside 1..=16", self.glyph_scale)));
        }
        if self.image_size > 4096 {
            return Err(Error::config("image_size", format!("{} px exceeds 4096", self.image_size)));
        }
        let (w, h) = font::text_size(self.max_digits, self.glyph_scale);
        if w > self.image_size || h > self.image_size {
            return Err(Error::config(
                "image_size",
                format!(
                    "{} px cannot hold {} digits at scale {} ({w}×{h} px)",
                    self.image_size, self.max_digits, self.glyph_scale
                ),
            ));
        }
        if self.digit_cell > 0 {
            let (gw, gh) = font::text_size(1, self.glyph_scale);
            if gw > self.digit_cell || gh > self.digit_cell {
                return Err(Error::config(
                    "digit_cell",
                    format!(
                        "{} px cells cannot hold {gw}×{gh} px glyphs (glyph_scale {})",
                        self.digit_cell, self.glyph_scale
                    ),
                ));
            }
            if self.max_digits as u64 * self.digit_cell as u64 > self.image_size as u64 {
                return Err(Error::config(
                    "digit_cell",
                    format!(
                        "{} digits of {} px cells do not fit a {} px row",
                        self.max_digits, self.digit_cell, self.image_size
                    ),
                ));
            }
        }
        if self.max_distractors > 0 {
            self.distractor_scene().validate()?;
        }
        Ok(())
    }

    fn distractor_scene(&self) -> SceneConfig {
        SceneConfig {
            image_size: self.image_size,
            half_size: self.distractor_half_size,
            min_center_distance: 2 * self.distractor_half_size,
            allow_overlap: false,
        }
    }
}

/// A fine-detail image's content: the digits, the text's top-left corner and the distractors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FineDetailScene {
    /// The layout the scene was drawn with.
    pub config: FineDetailConfig,
    /// Digit values 0–9, most significant first; the first is non-zero when there are several.
    pub digits: Vec<u8>,
    /// Text top-left corner, px.
    pub x: u32,
    /// Text top row, px.
    pub y: u32,
    /// Distractor shapes (random colours, never touching the text).
    pub distractors: Vec<Object>,
}

impl FineDetailScene {
    /// Samples a scene. Errors: [`Error::Config`] from [`FineDetailConfig::validate`].
    pub fn sample<R: Rng>(config: &FineDetailConfig, rng: &mut R) -> Result<FineDetailScene> {
        config.validate()?;
        let n = rng.random_range(config.min_digits..=config.max_digits);
        let digits: Vec<u8> =
            (0..n).map(|i| if i == 0 && n > 1 { rng.random_range(1..10) } else { rng.random_range(0..10) }).collect();
        // The text's top-left corner and the box distractors keep clear of (inclusive bounds, grown
        // by a 1-px gap): the glyphs, or the whole cells of the digit-per-cell layout.
        let (x, y, text_box) = if config.digit_cell == 0 {
            let (w, h) = font::text_size(n, config.glyph_scale);
            let x = rng.random_range(0..=config.image_size - w);
            let y = rng.random_range(0..=config.image_size - h);
            (x, y, (x as i64 - 1, y as i64 - 1, (x + w) as i64, (y + h) as i64))
        } else {
            let p = config.digit_cell;
            let cells = config.image_size / p;
            let row = rng.random_range(0..cells);
            let col = rng.random_range(0..=cells - n as u32);
            let (gw, gh) = font::text_size(1, config.glyph_scale);
            let cell_box =
                ((col * p) as i64 - 1, (row * p) as i64 - 1, ((col + n as u32) * p) as i64, ((row + 1) * p) as i64);
            (col * p + (p - gw) / 2, row * p + (p - gh) / 2, cell_box)
        };

        let mut distractors = Vec::new();
        let count = rng.random_range(0..=config.max_distractors);
        if count > 0 {
            let sc = config.distractor_scene();
            let hs = sc.half_size as i64;
            let (tx0, ty0, tx1, ty1) = text_box;
            let mut centres: Vec<(u32, u32)> = Vec::new();
            for _ in 0..count {
                for _ in 0..100 {
                    let cx = rng.random_range(sc.half_size..sc.image_size - sc.half_size);
                    let cy = rng.random_range(sc.half_size..sc.image_size - sc.half_size);
                    let (bx0, by0, bx1, by1) = (cx as i64 - hs, cy as i64 - hs, cx as i64 + hs, cy as i64 + hs);
                    let clear_of_text = bx1 < tx0 || bx0 > tx1 || by1 < ty0 || by0 > ty1;
                    if clear_of_text && sc.admissible(cx, cy, &centres) {
                        centres.push((cx, cy));
                        let colour = Colour::ALL[rng.random_range(0..6)];
                        let shape = if rng.random_bool(0.5) { Shape::Square } else { Shape::Circle };
                        distractors.push(Object { colour, shape, x: cx, y: cy });
                        break;
                    }
                }
            }
        }
        Ok(FineDetailScene { config: *config, digits, x, y, distractors })
    }

    /// The answer: the digits as a decimal string (e.g. "407").
    pub fn answer(&self) -> String {
        self.digits.iter().map(|d| char::from(b'0' + d)).collect()
    }

    /// A caption in the style of [`crate::Scene::caption`]: `"the number 407 at row 2 column 5"`
    /// (cell of the text's top-left corner on a `grid × grid` layout), then `", with "` and the
    /// distractors, ending with `"."`. `grid` 0 is treated as 1.
    pub fn caption(&self, grid: u32) -> String {
        let grid = grid.max(1);
        let s = self.config.image_size.max(1) as u64;
        let cell = |v: u32| (v as u64 * grid as u64 / s).min(grid as u64 - 1);
        let mut text = format!("the number {} at row {} column {}", self.answer(), cell(self.y), cell(self.x));
        if !self.distractors.is_empty() {
            let parts: Vec<String> =
                self.distractors.iter().map(|o| crate::scene::describe(o, grid, self.config.image_size)).collect();
            text.push_str(", with ");
            text.push_str(&parts.join(", "));
        }
        text.push('.');
        text
    }

    /// The centre (x, y) px of each digit's glyph, most significant first: the glyph's top-left
    /// corner is (x + i · pitch, y), pitch = `digit_cell`, or the font's advance
    /// (`GLYPH_WIDTH + GLYPH_SPACING`) · `glyph_scale` when `digit_cell` is 0 (as [`Self::render`] draws).
    pub fn digit_centres(&self) -> Vec<(u32, u32)> {
        let (gw, gh) = font::text_size(1, self.config.glyph_scale);
        let pitch = if self.config.digit_cell > 0 {
            self.config.digit_cell
        } else {
            (font::GLYPH_WIDTH + font::GLYPH_SPACING) * self.config.glyph_scale
        };
        (0..self.digits.len() as u32).map(|i| (self.x + i * pitch + gw / 2, self.y + gh / 2)).collect()
    }

    /// Renders the scene: white background, distractors, then the black text.
    pub fn render(&self) -> image::RgbImage {
        let s = self.config.image_size;
        let mut img = image::RgbImage::from_pixel(s, s, image::Rgb(BACKGROUND));
        for d in &self.distractors {
            draw_object(&mut img, d, self.config.distractor_half_size);
        }
        if self.config.digit_cell == 0 {
            font::draw_digits(&mut img, &self.digits, self.x, self.y, self.config.glyph_scale, TEXT_RGB);
        } else {
            for (i, &d) in self.digits.iter().enumerate() {
                let x = self.x + i as u32 * self.config.digit_cell;
                font::draw_digits(&mut img, &[d], x, self.y, self.config.glyph_scale, TEXT_RGB);
            }
        }
        img
    }
}
