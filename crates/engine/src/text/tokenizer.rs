//! The checkpoint's `tokenizer.json` (HF tokenizers) and LLaVA's `<image>`-aware tokenisation.
use std::path::{Path, PathBuf};

use super::{Template, IMAGE_PLACEHOLDER};
use crate::{Error, Result};

/// LLaVA's `IMAGE_TOKEN_INDEX`: the id standing for the `<image>` placeholder in a tokenised prompt.
pub const IMAGE_TOKEN_INDEX: i64 = -200;

/// A tokenizer loaded from a `tokenizer.json`.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextTokenizer({})", self.path.display())
    }
}

/// A tokenised prompt in LLaVA's layout: text token ids with [`IMAGE_TOKEN_INDEX`] where each
/// `<image>` placeholder was (LLaVA `mm_utils.tokenizer_image_token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptTokens {
    /// Token ids (≥ 0) and image markers ([`IMAGE_TOKEN_INDEX`]).
    pub ids: Vec<i64>,
}

impl PromptTokens {
    /// Number of `<image>` markers.
    pub fn image_count(&self) -> usize {
        self.ids.iter().filter(|&&i| i == IMAGE_TOKEN_INDEX).count()
    }

    /// Number of text tokens Q.
    pub fn text_len(&self) -> usize {
        self.ids.len() - self.image_count()
    }

    /// LLM input length Q + V·(images) when each image becomes `visual_tokens` embeddings.
    pub fn input_len(&self, visual_tokens: usize) -> usize {
        self.text_len() + visual_tokens * self.image_count()
    }

    /// The text chunks between image markers, as u32 ids (one more chunk than markers; chunks may be
    /// empty).
    pub fn text_chunks(&self) -> Vec<Vec<u32>> {
        self.ids.split(|&i| i == IMAGE_TOKEN_INDEX).map(|c| c.iter().map(|&i| i as u32).collect()).collect()
    }

    /// Start positions, in the LLM input, of each image's `visual_tokens` embeddings.
    pub fn image_positions(&self, visual_tokens: usize) -> Vec<usize> {
        let mut pos = 0;
        let mut out = vec![];
        for &i in &self.ids {
            if i == IMAGE_TOKEN_INDEX {
                out.push(pos);
                pos += visual_tokens;
            } else {
                pos += 1;
            }
        }
        out
    }
}

impl TextTokenizer {
    /// Loads `path` (a `tokenizer.json`).
    ///
    /// Errors: [`Error::Io`] if the file is missing; [`Error::Tokenizer`] if it cannot be parsed or
    /// its vocabulary is empty.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| Error::Tokenizer { path: path.to_path_buf(), msg: format!("cannot parse: {e}") })?;
        if inner.get_vocab_size(false) == 0 {
            return Err(Error::Tokenizer {
                path: path.to_path_buf(),
                msg: "`model.vocab` is empty: no text can be tokenised".into(),
            });
        }
        Ok(Self { inner, path: path.to_path_buf() })
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying HF tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    fn err(&self, msg: String) -> Error {
        Error::Tokenizer { path: self.path.clone(), msg }
    }

    /// Token ids of `text`; `add_special_tokens` applies the post-processor (e.g. Llama's BOS), as
    /// HF's `tokenizer(text)` does by default.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| self.err(format!("cannot encode {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`; `skip_special_tokens` drops special tokens.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(|e| self.err(format!("cannot decode {ids:?}: {e}")))
    }

    /// Id of a token (special or not), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Checks that the tokenizer has the template's special tokens and returns the stop token ids.
    ///
    /// Errors: [`Error::Tokenizer`] naming the first missing token.
    pub fn stop_token_ids(&self, template: Template) -> Result<Vec<u32>> {
        for t in template.required_tokens() {
            if self.token_id(t).is_none() {
                return Err(self.err(format!("lacks the special token `{t}` required by template {}", template.name())));
            }
        }
        Ok(template.stop_tokens().iter().filter_map(|t| self.token_id(t)).collect())
    }

    /// LLaVA's `tokenizer_image_token`: the prompt is split at `<image>`, each chunk tokenised with
    /// special tokens, a leading BOS kept once (stripped from every chunk when the first chunk starts
    /// with the BOS the tokenizer adds), and [`IMAGE_TOKEN_INDEX`] put between chunks.
    pub fn tokenize_with_image(&self, prompt: &str) -> Result<PromptTokens> {
        let chunks = prompt.split(IMAGE_PLACEHOLDER).map(|c| self.encode(c, true)).collect::<Result<Vec<_>>>()?;
        // The BOS this tokenizer prepends, found as what it produces for the empty string.
        let prefix = self.encode("", true)?;
        let mut ids: Vec<i64> = vec![];
        let mut offset = 0;
        if prefix.len() == 1 && chunks.first().and_then(|c| c.first()) == Some(&prefix[0]) {
            offset = 1;
            ids.push(prefix[0] as i64);
        }
        for (i, c) in chunks.iter().enumerate() {
            if i > 0 {
                // LLaVA inserts `[IMAGE_TOKEN_INDEX] * (offset + 1)` and then drops `offset`
                // elements of it like of every chunk: one marker remains.
                ids.push(IMAGE_TOKEN_INDEX);
            }
            ids.extend(c.iter().skip(offset).map(|&t| t as i64));
        }
        Ok(PromptTokens { ids })
    }

    /// Token ids of the question alone for QueCC's query embedding: the question (trimmed) tokenised
    /// with special tokens, as the authors' `clip_encoder.py` calls `llm_tokenizer(text)`.
    pub fn tokenize_query(&self, question: &str) -> Result<Vec<u32>> {
        let ids = self.encode(question.trim(), true)?;
        if ids.is_empty() {
            return Err(Error::Invalid("the question is empty".into()));
        }
        Ok(ids)
    }
}

/// Incremental detokeniser for streaming: feed ids one by one, get the newly completed text.
#[derive(Debug, Clone)]
pub struct TokenStream {
    tokenizer: TextTokenizer,
    ids: Vec<u32>,
    emitted: usize,
}

impl TokenStream {
    /// A stream over `tokenizer` (special tokens are skipped).
    pub fn new(tokenizer: TextTokenizer) -> Self {
        Self { tokenizer, ids: vec![], emitted: 0 }
    }

    /// Adds `id`; returns the text that became final (may be empty while a multi-byte character or
    /// a word piece is incomplete).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids, true)?;
        if text.ends_with('\u{FFFD}') || text.len() < self.emitted || !text.is_char_boundary(self.emitted) {
            return Ok(String::new());
        }
        let new = text[self.emitted..].to_string();
        self.emitted = text.len();
        Ok(new)
    }

    /// All text decoded so far.
    pub fn text(&self) -> Result<String> {
        self.tokenizer.decode(&self.ids, true)
    }
}
