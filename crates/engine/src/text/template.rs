//! Conversation templates of the LLaVA family (single turn, generation prompt appended).
//!
//! Sources: LLaVA `llava/conversation.py` (`conv_vicuna_v1`, also in the authors' repository
//! locuslab/llava-token-compression) and LLaVA-NeXT `llava/conversation.py` (`conv_qwen`, registered
//! as `qwen_1_5`, `SeparatorStyle.CHATML`). As in LLaVA's `get_prompt`, an image turns the first user
//! message into `"<image>\n" + question`.
use crate::{Error, Result};

/// The `<image>` placeholder in a prompt.
pub const IMAGE_PLACEHOLDER: &str = "<image>";

/// A conversation template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// `vicuna_v1` (LLaVA-1.5 / Vicuna-1.5): `SYSTEM USER: … ASSISTANT:`, sep `" "`, sep2 `"</s>"`.
    VicunaV1,
    /// `qwen_1_5` (LLaVA-NeXT, Qwen-1.5): ChatML with system "You are a helpful assistant.".
    Qwen15,
}

/// System prompt of LLaVA's `conv_vicuna_v1` (note: "user", not `conv_llava_v1`'s "human").
pub const VICUNA_V1_SYSTEM: &str = "A chat between a curious user and an artificial intelligence assistant. \
The assistant gives helpful, detailed, and polite answers to the user's questions.";

/// System message of LLaVA-NeXT's `conv_qwen`.
pub const QWEN_1_5_SYSTEM: &str = "You are a helpful assistant.";

impl Template {
    /// Looks a template up by LLaVA's name: `vicuna_v1` (alias `v1`) or `qwen_1_5` (alias `qwen_2`).
    ///
    /// Errors: [`Error::Invalid`] naming the unknown template.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "vicuna_v1" | "v1" => Ok(Self::VicunaV1),
            "qwen_1_5" | "qwen_2" => Ok(Self::Qwen15),
            other => {
                Err(Error::Invalid(format!("unknown conversation template `{other}` (expected vicuna_v1 or qwen_1_5)")))
            }
        }
    }

    /// LLaVA's name of the template.
    pub fn name(&self) -> &'static str {
        match self {
            Self::VicunaV1 => "vicuna_v1",
            Self::Qwen15 => "qwen_1_5",
        }
    }

    /// The template LLaVA uses for an LLM family: Llama → `vicuna_v1`, Qwen2 → `qwen_1_5`.
    pub fn for_architecture(arch: models::decoder::Architecture) -> Self {
        match arch {
            models::decoder::Architecture::Llama => Self::VicunaV1,
            models::decoder::Architecture::Qwen2 => Self::Qwen15,
        }
    }

    /// The single-turn prompt ending where the assistant's answer starts. With `image`, the user
    /// message is `"<image>\n" + question` (LLaVA's `DEFAULT_IMAGE_TOKEN + '\n' + qs`); a question
    /// that already holds `<image>` has it removed and is stripped first, so the prompt has one
    /// placeholder, as LLaVA's `preprocess_multimodal` (`llava/train/train.py`) and
    /// `model_vqa_science.py` treat a user-typed `<image>`.
    pub fn prompt(&self, question: &str, image: bool) -> String {
        let user = if !image {
            question.to_string()
        } else if question.contains(IMAGE_PLACEHOLDER) {
            format!("{IMAGE_PLACEHOLDER}\n{}", question.replace(IMAGE_PLACEHOLDER, "").trim())
        } else {
            format!("{IMAGE_PLACEHOLDER}\n{question}")
        };
        match self {
            // SeparatorStyle.TWO: system + sep, "USER: " + msg + sep, then "ASSISTANT:".
            Self::VicunaV1 => format!("{VICUNA_V1_SYSTEM} USER: {user} ASSISTANT:"),
            // SeparatorStyle.CHATML: system + sep + "\n", role + "\n" + msg + sep + "\n", role + "\n".
            Self::Qwen15 => format!(
                "<|im_start|>system\n{QWEN_1_5_SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
            ),
        }
    }

    /// Special tokens the tokenizer must know for this template (an error otherwise).
    pub fn required_tokens(&self) -> &'static [&'static str] {
        match self {
            Self::VicunaV1 => &["</s>"],
            Self::Qwen15 => &["<|im_start|>", "<|im_end|>"],
        }
    }

    /// Tokens that end the answer: `</s>` (sep2) for `vicuna_v1`; `<|im_end|>` and, when the
    /// tokenizer has it, `<|endoftext|>` for `qwen_1_5`.
    pub fn stop_tokens(&self) -> &'static [&'static str] {
        match self {
            Self::VicunaV1 => &["</s>"],
            Self::Qwen15 => &["<|im_end|>", "<|endoftext|>"],
        }
    }
}
