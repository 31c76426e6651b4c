//! The word-level tokenizer of the generated text, saved as a Hugging Face `tokenizer.json`.
//!
//! Model: `WordLevel` (tokenizers crate) over every piece of text the generators and the ChatML
//! template (Qwen2's, `<|im_start|>role\n…<|im_end|>\n`) can produce. Pre-tokenizer: one `Split`
//! with the regex [`PRE_TOKENIZER_PATTERN`] (behaviour `Isolated`): a word with its optional leading
//! space (`" shape"`), a single digit with its optional leading space (`" 4"`, then `"0"`, `"7"`: digits are
//! always split individually, so numbers of any length are tokenizable), a single whitespace
//! character, or a single other character (punctuation). Attaching the space to the following word
//! (as GPT-2's byte-level BPE does) lets the `Fuse` decoder restore the text exactly:
//! `decode(encode(t)) == t` for every covered text, e.g. "407" ↔ `["4", "0", "7"]`.
//! Special tokens (added tokens, never split): [`SPECIAL_TOKENS`], ids 0–5 in that order.

use std::path::Path;

use serde_json::json;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, SplitDelimiterBehavior, Tokenizer};

use crate::error::{Error, Result};
use crate::questions::{Family, DIGITS_QUESTION, SORT_OF_CLEVR_ANSWERS};
use crate::scene::Colour;

/// Padding token (id 0).
pub const PAD: &str = "<pad>";
/// Unknown-word token (id 1).
pub const UNK: &str = "<unk>";
/// End of text (id 2; Qwen2's `eos`/`pad` in base models).
pub const END_OF_TEXT: &str = "<|endoftext|>";
/// ChatML turn start (id 3).
pub const IM_START: &str = "<|im_start|>";
/// ChatML turn end (id 4; the chat model's generation stop token).
pub const IM_END: &str = "<|im_end|>";
/// The special tokens with their ids (= index). `<image>` is LLaVA's image placeholder.
pub const SPECIAL_TOKENS: [&str; 6] = [PAD, UNK, END_OF_TEXT, IM_START, IM_END, crate::dataset::IMAGE_TOKEN];

/// The pre-tokenizer regex (Oniguruma syntax, as used by both the Rust and Python `tokenizers`).
pub const PRE_TOKENIZER_PATTERN: &str = r" ?[A-Za-z]+| ?[0-9]|\s|[^A-Za-z0-9\s]";

/// Qwen2's default ChatML system prompt, covered by the vocabulary.
pub const CHATML_SYSTEM_PROMPT: &str = "You are a helpful assistant.";

/// Every text the vocabulary is built from: all questions (each family × colour), all answers
/// (yes, no, rectangle, circle, 1–6 and every digit, each with and without a leading space), ChatML role
/// names and system prompt, the LLaVA-v1 roles `USER`/`ASSISTANT`, the caption words, newline, space,
/// the ASCII punctuation characters and the `object_facts` question ([`crate::facts::question`]).
pub fn corpus() -> Vec<String> {
    let mut texts: Vec<String> = Vec::new();
    for family in Family::SORT_OF_CLEVR {
        for colour in Colour::ALL {
            texts.push(family.question(colour));
        }
    }
    texts.push(DIGITS_QUESTION.to_string());
    // Captions (`Scene::caption`, `FineDetailScene::caption`).
    texts.push(
        "the number 1 at row 0 column 0, with red rectangle at row 2 column 3, green circle at row 1 column 1.".into(),
    );
    for colour in Colour::ALL {
        texts.push(format!("{} {}", colour.name(), colour.name()));
    }
    // Answers with and without a leading space (ChatML puts them after "\n", other templates
    // such as Vicuna's "ASSISTANT: yes" after a space).
    texts.extend(SORT_OF_CLEVR_ANSWERS.iter().map(|s| format!("{s} {s}")));
    texts.extend((0..10).map(|d| format!("{d} {d}")));
    // ChatML roles (Qwen2) and LLaVA-v1 (Vicuna) roles "USER: … ASSISTANT: …".
    for t in ["system", "user", "assistant", "\n", " ", CHATML_SYSTEM_PROMPT, "USER ASSISTANT USER", "ASSISTANT"] {
        texts.push(t.to_string());
    }
    texts.push((b'!'..=b'~').filter(|c| c.is_ascii_punctuation()).map(char::from).collect());
    // The `object_facts` questions: words of the questions above and digits, so they add no word.
    texts.push(crate::facts::question(0));
    texts.push(crate::questions::NAME_QUESTION.to_string());
    texts
}

fn split() -> Result<Split> {
    Split::new(SplitPattern::Regex(PRE_TOKENIZER_PATTERN.into()), SplitDelimiterBehavior::Isolated, false)
        .map_err(|e| Error::Tokenizer { path: None, message: format!("bad pre-tokenizer pattern: {e}") })
}

/// The pre-tokenized pieces of `text` (special tokens are not recognised here).
/// Errors: [`Error::Tokenizer`].
pub fn pieces(text: &str) -> Result<Vec<String>> {
    let mut pts = PreTokenizedString::from(text);
    split()?.pre_tokenize(&mut pts).map_err(|e| Error::Tokenizer { path: None, message: e.to_string() })?;
    Ok(pts
        .get_splits(OffsetReferential::Original, OffsetType::Byte)
        .into_iter()
        .map(|(s, _, _)| s.to_string())
        .collect())
}

/// Builds the tokenizer over [`corpus`] plus `extra_texts`. Ids: [`SPECIAL_TOKENS`] 0–5, then the
/// pieces in byte order (deterministic). Errors: [`Error::Tokenizer`] if the JSON is rejected.
pub fn build_tokenizer(extra_texts: &[String]) -> Result<Tokenizer> {
    let mut words = std::collections::BTreeSet::new();
    for text in corpus().iter().chain(extra_texts) {
        for p in pieces(text)? {
            if !SPECIAL_TOKENS.contains(&p.as_str()) {
                words.insert(p);
            }
        }
    }
    let mut vocab = serde_json::Map::new();
    for (id, w) in SPECIAL_TOKENS.iter().map(|s| s.to_string()).chain(words).enumerate() {
        vocab.insert(w, json!(id));
    }
    let added: Vec<_> = SPECIAL_TOKENS
        .iter()
        .enumerate()
        .map(|(id, t)| {
            json!({"id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": PRE_TOKENIZER_PATTERN},
                          "behavior": "Isolated", "invert": false},
        "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": UNK},
    });
    doc.to_string()
        .parse::<Tokenizer>()
        .map_err(|e| Error::Tokenizer { path: None, message: format!("building tokenizer: {e}") })
}

/// Saves `tokenizer` as pretty-printed `tokenizer.json` at `path`, atomically (temp file + rename).
/// Errors: [`Error::Tokenizer`] (serialisation), [`Error::Io`].
pub fn save_tokenizer(tokenizer: &Tokenizer, path: &Path) -> Result<()> {
    let text = tokenizer
        .to_string(true)
        .map_err(|e| Error::Tokenizer { path: Some(path.to_path_buf()), message: e.to_string() })?;
    crate::dataset::write_atomic(path, text.as_bytes())
}

/// Loads a `tokenizer.json`. Errors: [`Error::Io`] if missing/unreadable, [`Error::Tokenizer`]
/// naming the file if it is not a valid tokenizer.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Tokenizer::from_bytes(&bytes)
        .map_err(|e| Error::Tokenizer { path: Some(path.to_path_buf()), message: e.to_string() })
}

/// A ChatML chat template (Jinja, the `chat_template` field HF `transformers` reads from
/// `tokenizer_config.json`): `<|im_start|>{role}\n{content}<|im_end|>\n` per message, a
/// [`CHATML_SYSTEM_PROMPT`] system turn when the conversation has none, and
/// `<|im_start|>assistant\n` when `add_generation_prompt` is set — the format of Qwen2 chat models.
pub const CHATML_TEMPLATE: &str = concat!(
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}",
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}",
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
);

/// The text [`CHATML_TEMPLATE`] renders for one user `question` (after `<image>\n`) and, if given,
/// the assistant's `answer` (without a generation prompt); with `answer = None` it ends with the
/// generation prompt `<|im_start|>assistant\n`.
pub fn chatml_prompt(question: &str, answer: Option<&str>) -> String {
    let mut s = format!(
        "{IM_START}system\n{CHATML_SYSTEM_PROMPT}{IM_END}\n{IM_START}user\n{}\n{question}{IM_END}\n",
        crate::dataset::IMAGE_TOKEN
    );
    match answer {
        Some(a) => s.push_str(&format!("{IM_START}assistant\n{a}{IM_END}\n")),
        None => s.push_str(&format!("{IM_START}assistant\n")),
    }
    s
}

/// Writes a `tokenizer_config.json` next to `tokenizer.json` so HF `transformers`' `AutoTokenizer`
/// loads the directory: `PreTrainedTokenizerFast`, eos `<|im_end|>`, pad `<pad>`, unk `<unk>`, no
/// bos, [`CHATML_TEMPLATE`]. Atomic. Errors: [`Error::Io`].
pub fn save_tokenizer_config(path: &Path) -> Result<()> {
    let config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": null,
        "eos_token": IM_END,
        "pad_token": PAD,
        "unk_token": UNK,
        "additional_special_tokens": [END_OF_TEXT, IM_START, IM_END, crate::dataset::IMAGE_TOKEN],
        "model_max_length": 4096,
        "clean_up_tokenization_spaces": false,
        "chat_template": CHATML_TEMPLATE,
    });
    let text = serde_json::to_string_pretty(&config).expect("json values serialise");
    crate::dataset::write_atomic(path, text.as_bytes())
}
