//! Image preprocessing with the semantics of HF `CLIPImageProcessor` as LLaVA-1.5 ran it (transformers
//! 4.x, PIL backend; `CLIPImageProcessorPil` in transformers 5): convert to RGB, optionally pad to a square
//! with the mean colour (LLaVA `image_aspect_ratio = "pad"`, `expand2square` in `llava/mm_utils.py`),
//! resize the shortest edge to 336 with PIL's bicubic filter, center-crop 336×336, rescale by 1/255,
//! normalise with CLIP's mean/std.
//!
//! The resize reimplements Pillow's `ImagingResample` (`libImaging/Resample.c`) for 8-bit images exactly:
//! separable passes (horizontal first), support scaled by the down-scaling factor (antialiasing), bicubic
//! kernel with a = −0.5, coefficients normalised then quantised to 22-bit fixed point, each pass rounded
//! and clipped to u8. The `image` crate's CatmullRom filter differs (no support scaling when
//! down-sampling, float accumulation), by tens of grey levels on detailed photographs.
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use image::{DynamicImage, RgbImage};
use std::path::Path;

/// CLIP's normalisation mean (OpenAI), RGB.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's normalisation standard deviation (OpenAI), RGB.
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Preprocessing parameters (HF `preprocessor_config.json` fields plus LLaVA's pad switch).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessorConfig {
    /// Resize so the shortest edge has this many pixels (`size.shortest_edge`, 336).
    pub shortest_edge: usize,
    /// Center-crop size (`crop_size`, 336×336) as (height, width).
    pub crop_size: (usize, usize),
    /// Rescale factor (1/255).
    pub rescale_factor: f32,
    /// Normalisation mean, RGB.
    pub image_mean: [f32; 3],
    /// Normalisation std, RGB.
    pub image_std: [f32; 3],
    /// LLaVA `image_aspect_ratio = "pad"`: pad to a square with the mean colour before resizing.
    pub pad_to_square: bool,
}

impl ImageProcessorConfig {
    /// `openai/clip-vit-large-patch14-336`'s processor; `pad_to_square` as LLaVA-1.5 stage 2 uses it.
    pub fn clip_vit_large_patch14_336(pad_to_square: bool) -> Self {
        Self {
            shortest_edge: 336,
            crop_size: (336, 336),
            rescale_factor: 1.0 / 255.0,
            image_mean: CLIP_MEAN,
            image_std: CLIP_STD,
            pad_to_square,
        }
    }

    /// The background colour LLaVA pads with: `tuple(int(x * 255) for x in image_mean)` (122, 116, 104).
    pub fn pad_colour(&self) -> [u8; 3] {
        self.image_mean.map(|m| (m * 255.0).clamp(0.0, 255.0) as u8)
    }

    /// Decodes an image file (any format the `image` crate reads; PNG/JPEG/WebP/BMP/GIF enabled) and
    /// preprocesses it: → (3, crop_h, crop_w) f32 on `device`. Errors: [`Error::Io`] if unreadable,
    /// [`Error::Image`] if not a decodable image.
    pub fn preprocess_file(&self, path: &Path, device: &Device) -> Result<Tensor> {
        let img = load_image(path)?;
        self.preprocess(&img, device)
    }

    /// Preprocesses a decoded image → (3, crop_h, crop_w) f32 on `device`. RGBA drops alpha, grey is
    /// replicated (PIL `convert("RGB")`). Errors: [`Error::Invalid`] for an empty image.
    pub fn preprocess(&self, img: &DynamicImage, device: &Device) -> Result<Tensor> {
        let rgb = self.resize_and_crop(img)?;
        let (ch, cw) = self.crop_size;
        let mut data = vec![0f32; 3 * ch * cw];
        for (x, y, px) in rgb.enumerate_pixels() {
            for c in 0..3 {
                let v = px.0[c] as f32 * self.rescale_factor;
                data[c * ch * cw + y as usize * cw + x as usize] = (v - self.image_mean[c]) / self.image_std[c];
            }
        }
        Ok(Tensor::from_vec(data, (3, ch, cw), device)?)
    }

    /// The u8 image after padding, resizing and cropping (before rescale/normalise), crop_w × crop_h.
    /// Errors: [`Error::Invalid`] for an empty image or zero sizes in the config.
    pub fn resize_and_crop(&self, img: &DynamicImage) -> Result<RgbImage> {
        let (ch, cw) = self.crop_size;
        if self.shortest_edge == 0 || ch == 0 || cw == 0 {
            return Err(Error::Invalid("image processor sizes must be positive".into()));
        }
        let mut rgb = img.to_rgb8();
        if rgb.width() == 0 || rgb.height() == 0 {
            return Err(Error::Invalid("image has zero width or height".into()));
        }
        if self.pad_to_square {
            rgb = expand_to_square(&rgb, self.pad_colour());
        }
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        // HF get_resize_output_image_size(default_to_square=False): short → size, long → int(size·long/short).
        let s = self.shortest_edge;
        let (nw, nh) = if w <= h {
            (s, (s as f64 * h as f64 / w as f64) as usize)
        } else {
            ((s as f64 * w as f64 / h as f64) as usize, s)
        };
        let resized = resize_bicubic_pil(&rgb, nw, nh);
        Ok(center_crop(&resized, cw, ch))
    }
}

/// Opens and decodes an image file. Errors: [`Error::Io`] if the file cannot be read, [`Error::Image`]
/// if its contents are not a supported image.
pub fn load_image(path: &Path) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    image::load_from_memory(&bytes).map_err(|e| Error::Image { path: path.to_path_buf(), msg: e.to_string() })
}

/// LLaVA `expand2square`: pastes the image centred (offset `(side − size) // 2`) on a square canvas of
/// the longer side filled with `colour`.
pub fn expand_to_square(img: &RgbImage, colour: [u8; 3]) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    if w == h {
        return img.clone();
    }
    let side = w.max(h);
    let mut out = RgbImage::from_pixel(side, side, image::Rgb(colour));
    let (ox, oy) = ((side - w) / 2, (side - h) / 2);
    image::imageops::replace(&mut out, img, ox as i64, oy as i64);
    out
}

/// HF `center_crop` (numpy): top = (h − crop_h) // 2, left = (w − crop_w) // 2; pads with zeros if the
/// image is smaller than the crop (as HF does), centred.
pub fn center_crop(img: &RgbImage, crop_w: usize, crop_h: usize) -> RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (cw, chh) = (crop_w as i64, crop_h as i64);
    // HF pads symmetrically first when the crop exceeds the image: offset = (crop - size) // 2.
    let top = if h >= chh { (h - chh) / 2 } else { -((chh - h + 1) / 2) };
    let left = if w >= cw { (w - cw) / 2 } else { -((cw - w + 1) / 2) };
    let mut out = RgbImage::new(crop_w as u32, crop_h as u32);
    for y in 0..chh {
        for x in 0..cw {
            let (sx, sy) = (x + left, y + top);
            if sx >= 0 && sy >= 0 && sx < w && sy < h {
                out.put_pixel(x as u32, y as u32, *img.get_pixel(sx as u32, sy as u32));
            }
        }
    }
    out
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Pillow `precompute_coeffs` + `normalize_coeffs_8bpc`: per output pixel, the first input index and
/// the fixed-point weights.
fn coeffs(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize; // C cast truncates toward 0
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let w: Vec<f64> = (xmin..xmax).map(|x| bicubic((x as f64 - center + 0.5) * ss)).collect();
            let total: f64 = w.iter().sum();
            let k = w
                .iter()
                .map(|&v| {
                    let v = if total != 0.0 { v / total } else { v };
                    let f = v * (1u32 << PRECISION_BITS) as f64;
                    if v < 0.0 { (f - 0.5) as i32 } else { (f + 0.5) as i32 }
                })
                .collect();
            (xmin, k)
        })
        .collect()
}

fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `Image.resize(size, Image.BICUBIC)` for RGB u8 images, bit-exact.
pub fn resize_bicubic_pil(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let src = img.as_raw();
    let half = 1i32 << (PRECISION_BITS - 1);
    // Horizontal pass (skipped when the width is unchanged, as Pillow does).
    let (tmp, tw) = if out_w != w {
        let cx = coeffs(w, out_w);
        let mut tmp = vec![0u8; out_w * h * 3];
        for y in 0..h {
            for (xx, (xmin, k)) in cx.iter().enumerate() {
                for c in 0..3 {
                    let mut acc = half;
                    for (i, &kv) in k.iter().enumerate() {
                        acc = acc.wrapping_add(src[(y * w + xmin + i) * 3 + c] as i32 * kv);
                    }
                    tmp[(y * out_w + xx) * 3 + c] = clip8(acc);
                }
            }
        }
        (tmp, out_w)
    } else {
        (src.clone(), w)
    };
    // Vertical pass.
    let out = if out_h != h {
        let cy = coeffs(h, out_h);
        let mut out = vec![0u8; tw * out_h * 3];
        for (yy, (ymin, k)) in cy.iter().enumerate() {
            for x in 0..tw {
                for c in 0..3 {
                    let mut acc = half;
                    for (i, &kv) in k.iter().enumerate() {
                        acc = acc.wrapping_add(tmp[((ymin + i) * tw + x) * 3 + c] as i32 * kv);
                    }
                    out[(yy * tw + x) * 3 + c] = clip8(acc);
                }
            }
        }
        out
    } else {
        tmp
    };
    RgbImage::from_raw(out_w as u32, out_h as u32, out).expect("buffer size matches dimensions")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_resize_is_exact() {
        let img = RgbImage::from_fn(5, 4, |x, y| image::Rgb([x as u8 * 40, y as u8 * 50, 7]));
        assert_eq!(resize_bicubic_pil(&img, 5, 4), img);
    }

    #[test]
    fn constant_image_stays_constant() {
        // Bicubic weights sum to one, so a flat image stays flat at any scale (closed form).
        let img = RgbImage::from_pixel(37, 23, image::Rgb([200, 13, 99]));
        let r = resize_bicubic_pil(&img, 11, 50);
        assert!(r.pixels().all(|p| p.0 == [200, 13, 99]));
    }

    #[test]
    fn pad_colour_matches_llava() {
        assert_eq!(ImageProcessorConfig::clip_vit_large_patch14_336(true).pad_colour(), [122, 116, 104]);
    }
}
