//! Rasterising scenes into RGB images, and converting images to flat `f32` buffers for a model.

use image::{Rgb, RgbImage};

use crate::scene::{Object, Scene, Shape};

/// Background colour (white, as in the canonical generator).
pub const BACKGROUND: [u8; 3] = [255, 255, 255];

/// Draws one filled object of half-size `half` (square `(2·half+1)²`, or disc of radius `half`:
/// pixels with `dx² + dy² < (half + ½)²`, i.e. `≤ half² + half`) into `img`, clipped to the image. No anti-aliasing, so every
/// object pixel has exactly the object's colour.
pub fn draw_object(img: &mut RgbImage, object: &Object, half: u32) {
    let (w, h) = img.dimensions();
    let half = half as i64;
    let colour = Rgb(object.colour.rgb());
    for dy in -half..=half {
        for dx in -half..=half {
            if object.shape == Shape::Circle && dx * dx + dy * dy > half * half + half {
                continue;
            }
            let (x, y) = (object.x as i64 + dx, object.y as i64 + dy);
            if x >= 0 && y >= 0 && (x as u32) < w && (y as u32) < h {
                img.put_pixel(x as u32, y as u32, colour);
            }
        }
    }
}

/// Renders a scene: a white `image_size × image_size` RGB image with the six objects drawn in
/// colour order (later objects over earlier ones, as in the canonical generator).
pub fn render_scene(scene: &Scene) -> RgbImage {
    render_scene_of(scene, &crate::Colour::ALL)
}

/// [`render_scene`] of the objects whose colours `present` lists only (the curriculum over the
/// number of objects: the scene with the others left out).
pub fn render_scene_of(scene: &Scene, present: &[crate::Colour]) -> RgbImage {
    let s = scene.config.image_size;
    let mut img = RgbImage::from_pixel(s, s, Rgb(BACKGROUND));
    for object in scene.objects.iter().filter(|o| present.contains(&o.colour)) {
        draw_object(&mut img, object, scene.config.half_size);
    }
    img
}

/// The image as a flat `f32` buffer of shape `(3, H, W)` (channel-major, "CHW", PyTorch/candle
/// layout), values `pixel / 255` in `[0, 1]`. No mean/std normalisation: that belongs to the vision
/// tower's preprocessor (CLIP's `image_mean`/`image_std`).
pub fn to_chw_f32(img: &RgbImage) -> Vec<f32> {
    let mut out = vec![0f32; 3 * img.width() as usize * img.height() as usize];
    write_chw_f32(img, &mut out);
    out
}

/// Stacks images into one `(B, 3, H, W)` `f32` buffer (see [`to_chw_f32`]); all images must share
/// one size. Returns `None` if sizes differ or `images` is empty.
pub fn batch_chw_f32(images: &[&RgbImage]) -> Option<Vec<f32>> {
    let first = images.first()?;
    if images.iter().any(|i| i.dimensions() != first.dimensions()) {
        return None;
    }
    let per = 3 * first.width() as usize * first.height() as usize;
    let mut out = vec![0f32; per * images.len()];
    for (img, chunk) in images.iter().zip(out.chunks_exact_mut(per)) {
        write_chw_f32(img, chunk);
    }
    Some(out)
}

fn write_chw_f32(img: &RgbImage, out: &mut [f32]) {
    let plane = img.width() as usize * img.height() as usize;
    for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = px[c] as f32 / 255.0;
        }
    }
}
