//! Image preprocessing with the semantics of HF `CLIPImageProcessor` as LLaVA-1.5 ran it (transformers
//! 4.x, PIL backend; `CLIPImageProcessorPil` in transformers 5): convert to RGB, optionally pad to a square
//! with the mean colour (LLaVA `image_aspect_ratio = "pad"`, `expand2square` in `llava/mm_utils.py`),
//! resize the shortest edge to 336 with PIL's bicubic filter, center-crop 336×336, rescale by 1/255,
//! normalise with CLIP's mean/std.
//!
//! The resize reimplements Pillow's `ImagingResample` (`libImaging/Resample.c`) for 8-bit images exactly:
//! separable passes (horizontal first), support scaled by the down-scaling factor (antialiasing), bicubic
//! kernel with a = −0.5, coefficients normalised then quantised to 22-bit fixed point, each pass rounded
//! and clipped to u8. The `image` crate's CatmullRom filter is the same kernel but accumulates in float
//! without the intermediate u8 rounding; on the test photographs it is off by up to 2 grey levels (mean
//! ≈ 0.18), measured by `tests/vision_parity.rs::image_crate_catmull_rom_differs_from_pil`. This version
//! is bit-exact there.
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use image::{DynamicImage, RgbImage};
use std::path::Path;

/// CLIP's normalisation mean (OpenAI), RGB.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's normalisation standard deviation (OpenAI), RGB.
#[allow(clippy::excessive_precision)] // the published constants, digit for digit
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

    /// Reads an HF `preprocessor_config.json` (`size` as `{"shortest_edge": n}` or a bare integer,
    /// `crop_size` as `{"height", "width"}` or an integer, `image_mean`, `image_std`, `rescale_factor`),
    /// with the CLIP-336 values as defaults; `pad_to_square` is LLaVA's `image_aspect_ratio == "pad"`.
    /// Errors: [`Error::Io`]; [`Error::Config`] naming the field for malformed or unsupported values
    /// (only `resample = 3` (bicubic) and `do_resize`/`do_center_crop`/`do_rescale`/`do_normalize` = true
    /// are implemented).
    pub fn from_file(path: &Path, pad_to_square: bool) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let err = |msg: String| Error::Config { path: path.to_path_buf(), msg };
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(format!("invalid JSON: {e}")))?;
        let mut cfg = Self::clip_vit_large_patch14_336(pad_to_square);
        let int = |x: &serde_json::Value, field: &str| -> Result<usize> {
            x.as_u64()
                .filter(|&n| n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| err(format!("`{field}` must be a positive integer, found {x}")))
        };
        if let Some(size) = v.get("size") {
            cfg.shortest_edge = match size.get("shortest_edge") {
                Some(se) => int(se, "size.shortest_edge")?,
                None if size.is_u64() => int(size, "size")?,
                None => {
                    return Err(err(format!("`size` must be an integer or {{\"shortest_edge\": n}}, found {size}")))
                }
            };
        }
        if let Some(crop) = v.get("crop_size") {
            cfg.crop_size = match (crop.get("height"), crop.get("width")) {
                (Some(h), Some(w)) => (int(h, "crop_size.height")?, int(w, "crop_size.width")?),
                _ if crop.is_u64() => (int(crop, "crop_size")?, int(crop, "crop_size")?),
                _ => {
                    return Err(err(format!(
                        "`crop_size` must be an integer or {{\"height\", \"width\"}}, found {crop}"
                    )))
                }
            };
        }
        let triple = |field: &str| -> Result<Option<[f32; 3]>> {
            match v.get(field) {
                None => Ok(None),
                Some(x) => {
                    let a = x.as_array().filter(|a| a.len() == 3 && a.iter().all(|e| e.is_number()));
                    let a = a.ok_or_else(|| err(format!("`{field}` must be 3 numbers, found {x}")))?;
                    Ok(Some([0, 1, 2].map(|i| a[i].as_f64().unwrap_or(0.0) as f32)))
                }
            }
        };
        if let Some(m) = triple("image_mean")? {
            cfg.image_mean = m;
        }
        if let Some(s) = triple("image_std")? {
            if s.iter().any(|&x| x <= 0.0) {
                return Err(err("`image_std` must be positive".into()));
            }
            cfg.image_std = s;
        }
        if let Some(r) = v.get("rescale_factor") {
            cfg.rescale_factor =
                r.as_f64().ok_or_else(|| err(format!("`rescale_factor` must be a number, found {r}")))? as f32;
        }
        if let Some(r) = v.get("resample") {
            if r.as_u64() != Some(3) {
                return Err(err(format!("`resample` {r} is not supported (only 3 = bicubic)")));
            }
        }
        for flag in ["do_resize", "do_center_crop", "do_rescale", "do_normalize"] {
            if let Some(f) = v.get(flag) {
                if f.as_bool() != Some(true) {
                    return Err(err(format!("`{flag}` = {f} is not supported (only true)")));
                }
            }
        }
        Ok(cfg)
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
                    if v < 0.0 {
                        (f - 0.5) as i32
                    } else {
                        (f + 0.5) as i32
                    }
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
    fn reads_hf_preprocessor_configs_old_and_new() {
        let dir = std::env::temp_dir().join(format!("vlm-pre-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("preprocessor_config.json");
        // openai/clip-vit-large-patch14-336 ships the old integer form.
        std::fs::write(
            &p,
            r#"{"crop_size": 336, "do_center_crop": true, "do_normalize": true, "do_resize": true,
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
            "resample": 3, "size": 336}"#,
        )
        .unwrap();
        assert_eq!(
            ImageProcessorConfig::from_file(&p, false).unwrap(),
            ImageProcessorConfig::clip_vit_large_patch14_336(false)
        );
        std::fs::write(&p, r#"{"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 200}}"#).unwrap();
        let c = ImageProcessorConfig::from_file(&p, true).unwrap();
        assert_eq!((c.shortest_edge, c.crop_size, c.pad_to_square), (224, (224, 200), true));
        for (bad, field) in [
            (r#"{"resample": 2}"#, "resample"),
            (r#"{"size": "big"}"#, "size"),
            (r#"{"image_std": [1, 0, 1]}"#, "image_std"),
            (r#"{"do_resize": false}"#, "do_resize"),
        ] {
            std::fs::write(&p, bad).unwrap();
            match ImageProcessorConfig::from_file(&p, false) {
                Err(Error::Config { msg, .. }) => assert!(msg.contains(field), "{msg}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn pad_colour_matches_llava() {
        assert_eq!(ImageProcessorConfig::clip_vit_large_patch14_336(true).pad_colour(), [122, 116, 104]);
    }
}
