//! A hand-drawn 3×5 bitmap font for the digits 0–9 (the fine-detail task's glyphs).
//!
//! Strokes are one pixel wide and several glyph pairs differ in a single pixel (8/0, 8/6, 8/9, 6/5,
//! 9/3), and 6/9 and 2/5 are rotations/mirrors of each other with equal ink, so telling them apart
//! needs pixel-level detail: averaging a glyph over any cell that contains it loses its identity.

/// Glyph width, px (before scaling).
pub const GLYPH_WIDTH: u32 = 3;
/// Glyph height, px (before scaling).
pub const GLYPH_HEIGHT: u32 = 5;
/// Blank columns between consecutive glyphs, px (before scaling).
pub const GLYPH_SPACING: u32 = 1;

/// Rows of each digit's glyph, top to bottom; bit 2 is the left column, bit 0 the right one.
const GLYPHS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111], // 0
    [0b010, 0b110, 0b010, 0b010, 0b111], // 1
    [0b111, 0b001, 0b111, 0b100, 0b111], // 2
    [0b111, 0b001, 0b111, 0b001, 0b111], // 3
    [0b101, 0b101, 0b111, 0b001, 0b001], // 4
    [0b111, 0b100, 0b111, 0b001, 0b111], // 5
    [0b111, 0b100, 0b111, 0b101, 0b111], // 6
    [0b111, 0b001, 0b001, 0b001, 0b001], // 7
    [0b111, 0b101, 0b111, 0b101, 0b111], // 8
    [0b111, 0b101, 0b111, 0b001, 0b111], // 9
];

/// Whether pixel `(col, row)` of `digit`'s unscaled glyph is ink. `digit` must be 0–9 and
/// `col < 3`, `row < 5`; anything else returns `false`.
pub fn glyph_pixel(digit: u8, col: u32, row: u32) -> bool {
    if digit > 9 || col >= GLYPH_WIDTH || row >= GLYPH_HEIGHT {
        return false;
    }
    GLYPHS[digit as usize][row as usize] >> (GLYPH_WIDTH - 1 - col) & 1 == 1
}

/// Size `(width, height)` in px of a string of `n` glyphs drawn at integer `scale`.
pub fn text_size(n: usize, scale: u32) -> (u32, u32) {
    let n = n as u32;
    let w = if n == 0 { 0 } else { n * GLYPH_WIDTH + (n - 1) * GLYPH_SPACING };
    (w * scale, GLYPH_HEIGHT * scale)
}

/// Draws `digits` (values 0–9; others are skipped as blanks) with top-left corner `(x, y)`, each font
/// pixel as a `scale × scale` block of `colour`, clipped to the image.
pub fn draw_digits(img: &mut image::RgbImage, digits: &[u8], x: u32, y: u32, scale: u32, colour: [u8; 3]) {
    let (w, h) = img.dimensions();
    for (i, &d) in digits.iter().enumerate() {
        let gx = x + i as u32 * (GLYPH_WIDTH + GLYPH_SPACING) * scale;
        for row in 0..GLYPH_HEIGHT {
            for col in 0..GLYPH_WIDTH {
                if !glyph_pixel(d, col, row) {
                    continue;
                }
                for sy in 0..scale {
                    for sx in 0..scale {
                        let (px, py) = (gx + col * scale + sx, y + row * scale + sy);
                        if px < w && py < h {
                            img.put_pixel(px, py, image::Rgb(colour));
                        }
                    }
                }
            }
        }
    }
}
