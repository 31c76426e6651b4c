//! The fine-detail task: read a short number drawn small, among distractor shapes.
//!
//! It plays the role of the paper's OCR benchmarks (TextVQA, DocVQA, …; paper §4.2, Figure 3), where
//! the optimal number of visual tokens is larger than for reasoning tasks. Design and why it needs
//! many visual tokens:
//! * the number has 2–4 digits drawn in black with the 3×5 [`crate::font`] (1-px strokes; several
//!   glyph pairs differ in one pixel, 6/9 and 2/5 have equal ink), at a uniformly random position,
//!   so a string covers at most 15×5 px of an 80×80 image (≈ 1 %);
//! * 0–4 Sort-of-CLEVR shapes in random colours are drawn as distractors (never touching the text);
//! * on an 8×8 grid of 10-px patches a digit lies within one or two patches; pooling the grid to
//!   4×4, 2×2 or 1×1 visual tokens (V = 16, 4, 1) averages each token over 20², 40² or 80² px, of
//!   which the text is a few percent, next to distractors of far larger area. Pooling only keeps
//!   per-cell sums, and glyphs with equal ink inside one cell (6 vs 9, 2 vs 5) become identical —
//!   the test `pooling_confuses_equal_ink_glyphs` shows this at the pixel level — while the 10^k
//!   possible answers leave no prior to fall back on (chance ≤ 1/90). Sort-of-CLEVR answers, in
//!   contrast, depend on 11×11 coloured blobs whose colour and rough position survive pooling.

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
}

impl Default for FineDetailConfig {
    fn default() -> Self {
        FineDetailConfig {
            image_size: 80,
            min_digits: 2,
            max_digits: 4,
            glyph_scale: 1,
            max_distractors: 4,
            distractor_half_size: 5,
        }
    }
}

impl FineDetailConfig {
    /// Checks the fields. Errors: [`Error::Config`] naming the field (no digits, `min > max`, more
    /// than 32 digits, scale 0 or > 16, text wider than the image, bad distractor size).
    pub fn validate(&self) -> Result<()> {
        if self.min_digits == 0 || self.max_digits > 32 {
            return Err(Error::config("min_digits", format!("digits must be within 1..=32, got {}..={}", self.min_digits, self.max_digits)));
        }
        if self.min_digits > self.max_digits {
            return Err(Error::config("max_digits", format!("{} is below min_digits {}", self.max_digits, self.min_digits)));
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
                format!("{} px cannot hold {} digits at scale {} ({w}×{h} px)", self.image_size, self.max_digits, self.glyph_scale),
            ));
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
        let digits: Vec<u8> = (0..n)
            .map(|i| if i == 0 && n > 1 { rng.random_range(1..10) } else { rng.random_range(0..10) })
            .collect();
        let (w, h) = font::text_size(n, config.glyph_scale);
        let x = rng.random_range(0..=config.image_size - w);
        let y = rng.random_range(0..=config.image_size - h);

        let mut distractors = Vec::new();
        let count = rng.random_range(0..=config.max_distractors);
        if count > 0 {
            let sc = config.distractor_scene();
            let hs = sc.half_size as i64;
            // Text box grown by a 1-px gap, inclusive bounds.
            let (tx0, ty0, tx1, ty1) = (x as i64 - 1, y as i64 - 1, (x + w) as i64, (y + h) as i64);
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
            let parts: Vec<String> = self
                .distractors
                .iter()
                .map(|o| crate::scene::describe(o, grid, self.config.image_size))
                .collect();
            text.push_str(", with ");
            text.push_str(&parts.join(", "));
        }
        text.push('.');
        text
    }

    /// Renders the scene: white background, distractors, then the black text.
    pub fn render(&self) -> image::RgbImage {
        let s = self.config.image_size;
        let mut img = image::RgbImage::from_pixel(s, s, image::Rgb(BACKGROUND));
        for d in &self.distractors {
            draw_object(&mut img, d, self.config.distractor_half_size);
        }
        font::draw_digits(&mut img, &self.digits, self.x, self.y, self.config.glyph_scale, TEXT_RGB);
        img
    }
}
