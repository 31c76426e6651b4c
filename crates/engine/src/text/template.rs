//! Conversation templates of the LLaVA family (single or multi-turn, generation prompt appended).
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
        self.chat_prompt(None, &[], question, image)
    }

    /// A multi-turn prompt, as LLaVA's `Conversation.get_prompt` writes one: the system prompt
    /// (`system`, or the template's own), the earlier `(user, assistant)` exchanges of `history`, then
    /// `question` and the opening of the assistant's answer. With `image`, the *first* user message
    /// carries `"<image>\n"` (LLaVA puts the image in the first turn), treated as in [`Self::prompt`].
    /// `vicuna_v1` (`SeparatorStyle.TWO`): `system + " "`, then `"USER: " + msg + " "` and
    /// `"ASSISTANT: " + msg + "</s>"` alternately, ending in `"ASSISTANT:"`. `qwen_1_5`
    /// (`SeparatorStyle.CHATML`): `"<|im_start|>" + role + "\n" + msg + "<|im_end|>\n"` per message,
    /// ending in `"<|im_start|>assistant\n"`.
    pub fn chat_prompt(
        &self,
        system: Option<&str>,
        history: &[(String, String)],
        question: &str,
        image: bool,
    ) -> String {
        let with_image = |text: &str| {
            if text.contains(IMAGE_PLACEHOLDER) {
                format!("{IMAGE_PLACEHOLDER}\n{}", text.replace(IMAGE_PLACEHOLDER, "").trim())
            } else {
                format!("{IMAGE_PLACEHOLDER}\n{text}")
            }
        };
        let mut users: Vec<String> = history.iter().map(|(u, _)| u.clone()).chain([question.to_string()]).collect();
        if image {
            users[0] = with_image(&users[0]);
        }
        let question = users.pop().unwrap_or_default();
        match self {
            Self::VicunaV1 => {
                let mut out = format!("{} ", system.unwrap_or(VICUNA_V1_SYSTEM));
                for (user, (_, answer)) in users.iter().zip(history) {
                    out.push_str(&format!("USER: {user} ASSISTANT: {answer}</s>"));
                }
                out.push_str(&format!("USER: {question} ASSISTANT:"));
                out
            }
            Self::Qwen15 => {
                let mut out = format!("<|im_start|>system\n{}<|im_end|>\n", system.unwrap_or(QWEN_1_5_SYSTEM));
                for (user, (_, answer)) in users.iter().zip(history) {
                    out.push_str(&format!(
                        "<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>\n"
                    ));
                }
                out.push_str(&format!("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"));
                out
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected strings written out by hand from LLaVA's `Conversation.get_prompt` (`conv_vicuna_v1`:
    /// SeparatorStyle.TWO, sep " ", sep2 "</s>"; `conv_qwen`: CHATML, sep "<|im_end|>").
    #[test]
    fn multi_turn_prompts_follow_get_prompt() {
        let history = vec![("What is it?".to_string(), "A cat.".to_string())];
        assert_eq!(
            Template::VicunaV1.chat_prompt(None, &history, "What colour?", true),
            format!("{VICUNA_V1_SYSTEM} USER: <image>\nWhat is it? ASSISTANT: A cat.</s>USER: What colour? ASSISTANT:")
        );
        assert_eq!(
            Template::Qwen15.chat_prompt(Some("Be brief."), &history, "What colour?", false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is it?<|im_end|>\n\
             <|im_start|>assistant\nA cat.<|im_end|>\n<|im_start|>user\nWhat colour?<|im_end|>\n<|im_start|>assistant\n"
        );
        // One turn is the single-turn prompt.
        for t in [Template::VicunaV1, Template::Qwen15] {
            assert_eq!(t.chat_prompt(None, &[], "Why?", true), t.prompt("Why?", true));
        }
    }
}
