//! The CLIP vision tower ([`clip`], configured by [`config`]) with HF-indexed hidden states, and
//! feature selection into [`VisionFeatures`] ([`features`]). Image preprocessing and loading a tower
//! from a directory are in the engine crate (`engine::vision`).
pub mod clip;
pub mod config;
pub mod features;

pub use clip::ClipVisionTower;
pub use config::ClipVisionConfig;
pub use features::{extract_features, FeatureLayers, VisionFeatures};
