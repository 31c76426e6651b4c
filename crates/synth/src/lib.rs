#![warn(missing_docs)]
//! Generated benchmarks for training small VLMs on a laptop.
//!
//! * [`scene`], [`render`], [`questions`]: Sort-of-CLEVR (Santoro et al. 2017) relational reasoning.
//! * [`font`], [`fine_detail`]: a digit-reading task that needs fine image detail (the role of the
//!   paper's OCR benchmarks, arXiv 2411.03312 §4.2).
//! * [`dataset`]: deterministic in-memory generation ([`Generator`]) and LLaVA-format PNG + JSONL I/O.
//! * [`tokenizer`]: the word-level `tokenizer.json` covering all generated text and ChatML.

pub mod dataset;
pub mod error;
pub mod facts;
pub mod fine_detail;
pub mod font;
pub mod grid_caption;
pub mod questions;
pub mod render;
pub mod scene;
pub mod tokenizer;

pub use dataset::{
    load_image, read_dataset, read_records, write_dataset, CaptionFormat, Content, DatasetConfig, FactSplit, Generator,
    ImageSample, Record, Task, IMAGE_TOKEN,
};
pub use error::{Error, Result};
pub use fine_detail::{FineDetailConfig, FineDetailScene};
pub use questions::{short_question, Family, Group, Qa};
pub use render::{batch_chw_f32, render_scene, render_scene_of, to_chw_f32};
pub use scene::{Colour, Object, Scene, SceneConfig, Shape};
pub use tokenizer::{build_tokenizer, load_tokenizer, save_tokenizer};
