//! Text side of the VLM: the checkpoint's tokenizer, conversation templates (`vicuna_v1`,
//! `qwen_1_5`), LLaVA's `<image>`-aware tokenisation and the splice of visual embeddings into the
//! LLM input.
mod embeds;
mod template;
mod tokenizer;

pub use embeds::input_embeddings;
pub use template::{Template, IMAGE_PLACEHOLDER, QWEN_1_5_SYSTEM, VICUNA_V1_SYSTEM};
pub use tokenizer::{PromptTokens, TextTokenizer, TokenStream, IMAGE_TOKEN_INDEX};
