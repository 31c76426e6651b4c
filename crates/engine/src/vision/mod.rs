//! The image side of the engine: preprocessing ([`preprocess`]) and loading a CLIP tower from a
//! directory or a LLaVA checkpoint ([`load`]); the tower itself is `models::vision`.
//!
//! Typical use (LLaVA-1.5 / QueCC, ViT-L/14-336):
//! ```no_run
//! # use engine::vision::*; use models::vision::{extract_features, FeatureLayers}; use models::Mode; use candle_core::Device;
//! # fn main() -> engine::Result<()> {
//! let dev = Device::Cpu;
//! let dir = std::path::Path::new("clip-vit-large-patch14-336");
//! let tower = load_clip_tower(dir, 23, Mode::Inference, &dev)?; // only 23 of 24 blocks are needed
//! let proc = ImageProcessorConfig::clip_vit_large_patch14_336(true);
//! let pixels = proc.preprocess_file("cat.png".as_ref(), &dev)?.unsqueeze(0)?; // (1, 3, 336, 336)
//! let feats = extract_features(&tower, &pixels, &FeatureLayers::default())?; // single (1,576,1024), multi (1,576,4096)
//! # Ok(()) }
//! ```
pub mod load;
pub mod preprocess;

pub use load::{
    load_clip_tower, load_clip_tower_with_config, safetensors_files, var_builder_from_files, LLAVA_VISION_PREFIX,
};
pub use preprocess::{load_image, ImageProcessorConfig, CLIP_MEAN, CLIP_STD};
