//! The CLIP vision tower ([`clip`], configured by [`config`]) with HF-indexed hidden states, and
//! feature selection into [`VisionFeatures`] ([`features`]), and the select layer's attention maps for
//! training-free token reduction ([`maps`]). Image preprocessing and loading a tower
//! from a directory are in the engine crate (`engine::vision`).
pub mod clip;
pub mod config;
pub mod features;
pub mod maps;

pub use clip::{AttentionMaps, ClipVisionTower};
pub use config::ClipVisionConfig;
pub use features::{extract_features, FeatureLayers, VisionFeatures};
pub use maps::{extract_with_maps, MapsRequest, SelectLayerOutputs, SingleHeadAttention};
