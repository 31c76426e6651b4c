//! Tokenising LLaVA conversations for training: the ChatML (`qwen_1_5`) prompt split at `<image>`,
//! the answer followed by `<|im_end|>` as the only loss targets (LLaVA-NeXT `preprocess_qwen` masks
//! system and user turns with `IGNORE_INDEX`), and right-padded batches.
//!
//! Sequence layout of one example (length `P + V + S + A`):
//! `prefix (P tokens: system + "user\n")`, `V visual embeddings`, `suffix (S: "\nQUESTION<|im_end|>\n<|im_start|>assistant\n")`,
//! `answer (A: the answer tokens + <|im_end|>)`. The token at position t is predicted from position t−1.
use std::path::Path;

use candle_core::{Device, Tensor};
use engine::text::{Template, TextTokenizer};
use synth::Family;

use crate::{Error, Result};

/// One tokenised question about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Row of the image in the [`crate::features::FeatureSet`].
    pub image: usize,
    /// Tokens before `<image>`.
    pub prefix: Vec<u32>,
    /// Tokens after `<image>` up to and including the assistant header.
    pub suffix: Vec<u32>,
    /// Answer tokens followed by `<|im_end|>` (the loss targets).
    pub answer: Vec<u32>,
    /// The question alone, for QueCC's query embedding (authors' `clip_encoder.py`).
    pub query: Vec<u32>,
    /// Question family (for per-family accuracy).
    pub family: Family,
}

/// Turns (question, answer) pairs into [`Example`]s with a checkpoint's tokenizer and the ChatML template.
#[derive(Debug, Clone)]
pub struct ConversationEncoder {
    tokenizer: TextTokenizer,
    template: Template,
    im_end: u32,
}

impl ConversationEncoder {
    /// Loads `tokenizer.json`. Errors: unreadable tokenizer, or one lacking `<|im_start|>` / `<|im_end|>`.
    pub fn new(tokenizer_path: &Path) -> Result<Self> {
        let tokenizer = TextTokenizer::from_file(tokenizer_path)?;
        let template = Template::Qwen15;
        tokenizer.stop_token_ids(template)?;
        let im_end = tokenizer.token_id("<|im_end|>").ok_or_else(|| {
            Error::Vlm(engine::Error::Tokenizer {
                path: tokenizer_path.to_path_buf(),
                msg: "lacks `<|im_end|>`".into(),
            })
        })?;
        Ok(Self { tokenizer, template, im_end })
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The conversation template (ChatML / `qwen_1_5`).
    pub fn template(&self) -> Template {
        self.template
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.inner().get_vocab_size(true)
    }

    /// Id of `<|im_end|>` (the answer's end and the stop token).
    pub fn im_end(&self) -> u32 {
        self.im_end
    }

    /// (prefix, suffix) token ids of the generation prompt for `question` (split at `<image>`).
    /// Errors: the tokenizer fails or the prompt does not hold exactly one `<image>`.
    pub fn prompt(&self, question: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let tokens = self.tokenizer.tokenize_with_image(&self.template.prompt(question, true))?;
        let chunks = tokens.text_chunks();
        if chunks.len() != 2 {
            return Err(Error::config("question", format!("{question:?} must not contain `<image>` itself")));
        }
        Ok((chunks[0].clone(), chunks[1].clone()))
    }

    /// Tokenises one question/answer pair about feature row `image`. The question is the text after
    /// LLaVA's `<image>\n` prefix (stripped if present). Errors: tokenizer failures; an empty answer.
    pub fn example(&self, image: usize, question: &str, answer: &str, family: Family) -> Result<Example> {
        let question = question.strip_prefix("<image>\n").unwrap_or(question);
        let (prefix, suffix) = self.prompt(question)?;
        let mut answer_ids = self.tokenizer.encode(answer, false)?;
        if answer_ids.is_empty() {
            return Err(Error::config("answer", format!("empty answer to {question:?}")));
        }
        answer_ids.push(self.im_end);
        let query = self.tokenizer.tokenize_query(question)?;
        Ok(Example { image, prefix, suffix, answer: answer_ids, query, family })
    }
}

impl ConversationEncoder {
    /// Tokenises one question in its short form ([`synth::short_question`], e.g. "shape red") for the
    /// first stage of the staged curriculum (`VlmTrainConfig::short_question_steps`): no chat
    /// template — the V visual tokens, then `" " + short` (prefix empty, suffix = the two short-form
    /// tokens), then the answer + `<|im_end|>` as targets, as the PyTorch probe
    /// `scripts/learnability/probe_vlm.py` (`SHORTQ`) does. The query for QueCC's query embedding is
    /// the short form's tokens. Errors: a question without exactly one colour word; tokenizer
    /// failures; a short form or answer that tokenizes to nothing.
    pub fn short_example(&self, image: usize, question: &str, answer: &str, family: Family) -> Result<Example> {
        let question = question.strip_prefix("<image>\n").unwrap_or(question);
        let short = synth::short_question(question, family).map_err(|e| Error::config("question", e.to_string()))?;
        let suffix = self.tokenizer.encode(&format!(" {short}"), false)?;
        let mut answer_ids = self.tokenizer.encode(answer, false)?;
        if suffix.is_empty() || answer_ids.is_empty() {
            return Err(Error::config("answer", format!("empty short form or answer for {question:?}")));
        }
        answer_ids.push(self.im_end);
        Ok(Example { image, prefix: vec![], query: suffix.clone(), suffix, answer: answer_ids, family })
    }
}

/// A right-padded training batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Feature rows of the images, (B) u32.
    pub image_index: Tensor,
    /// Text tokens prefix ‖ suffix ‖ answer, right-padded with id 0, (B, Lt) u32.
    pub text_ids: Tensor,
    /// P of each row: where the V visual embeddings are spliced in.
    pub prefix_lens: Vec<usize>,
    /// The LLM input as rows of [text embeddings (B·Lt, H) ; visual embeddings (B·V, H)], (B·(Lt + V)) u32:
    /// position t of row i takes text row i·Lt + t for t < P, visual row B·Lt + i·V + (t − P) for
    /// P ≤ t < P + V, and text row i·Lt + t − V after (the LLaVA splice at `<image>`, as one gather).
    pub splice_index: Tensor,
    /// Indices into the flattened (B·(Lt + V)) positions whose next token is a target, (n) u32.
    pub loss_positions: Tensor,
    /// The target token of each loss position, (n) u32.
    pub targets: Tensor,
    /// Question tokens for the query embedding, right-padded, (B, Lq) u32.
    pub query_ids: Tensor,
    /// Non-padding length of each query row.
    pub query_lens: Vec<usize>,
    /// V.
    pub visual_tokens: usize,
}

impl Batch {
    /// B.
    pub fn len(&self) -> usize {
        self.prefix_lens.len()
    }
    /// Whether the batch is empty (never for a collated batch).
    pub fn is_empty(&self) -> bool {
        self.prefix_lens.is_empty()
    }
}

/// [`Batch::splice_index`] for rows with the given prefix lengths, text length Lt and V.
fn splice_index(prefix_lens: &[usize], lt: usize, visual_tokens: usize) -> Vec<u32> {
    let b = prefix_lens.len();
    let mut splice = Vec::with_capacity(b * (lt + visual_tokens));
    for (i, &p) in prefix_lens.iter().enumerate() {
        splice.extend((0..p).map(|t| (i * lt + t) as u32));
        splice.extend((0..visual_tokens).map(|j| (b * lt + i * visual_tokens + j) as u32));
        splice.extend((p..lt).map(|t| (i * lt + t) as u32));
    }
    splice
}

impl Batch {
    /// Rows `start..start + len` as a batch of their own (same Lt and Lq, padding kept), for
    /// data-parallel steps. Errors: [`Error::Config`] for an empty or out-of-range row range.
    pub fn rows(&self, start: usize, len: usize) -> Result<Batch> {
        let b = self.len();
        if len == 0 || start + len > b {
            return Err(Error::config("rows", format!("rows {start}..{} of a batch of {b}", start + len)));
        }
        let dev = self.text_ids.device();
        let lt = self.text_ids.dim(1)?;
        let l = lt + self.visual_tokens;
        let prefix_lens = self.prefix_lens[start..start + len].to_vec();
        let splice = splice_index(&prefix_lens, lt, self.visual_tokens);
        let (lo, hi) = ((start * l) as u32, ((start + len) * l) as u32);
        let (mut positions, mut targets) = (vec![], vec![]);
        for (p, t) in self.loss_positions.to_vec1::<u32>()?.into_iter().zip(self.targets.to_vec1::<u32>()?) {
            if (lo..hi).contains(&p) {
                positions.push(p - lo);
                targets.push(t);
            }
        }
        let n = positions.len();
        Ok(Batch {
            image_index: self.image_index.narrow(0, start, len)?,
            text_ids: self.text_ids.narrow(0, start, len)?,
            prefix_lens,
            splice_index: Tensor::from_vec(splice, len * l, dev)?,
            loss_positions: Tensor::from_vec(positions, n, dev)?,
            targets: Tensor::from_vec(targets, n, dev)?,
            query_ids: self.query_ids.narrow(0, start, len)?,
            query_lens: self.query_lens[start..start + len].to_vec(),
            visual_tokens: self.visual_tokens,
        })
    }
}

/// Collates examples for an LLM input with `visual_tokens` visual embeddings per image.
/// Errors: [`Error::Config`] for an empty list.
pub fn collate(examples: &[&Example], visual_tokens: usize, device: &Device) -> Result<Batch> {
    if examples.is_empty() {
        return Err(Error::config("batch_size", "a batch needs at least one example"));
    }
    let b = examples.len();
    let lt = examples.iter().map(|e| e.prefix.len() + e.suffix.len() + e.answer.len()).max().unwrap_or(0);
    let lq = examples.iter().map(|e| e.query.len()).max().unwrap_or(0);
    let l = lt + visual_tokens;
    let (mut ids, mut qids) = (vec![0u32; b * lt], vec![0u32; b * lq]);
    let (mut positions, mut targets) = (vec![], vec![]);
    let prefix_lens: Vec<usize> = examples.iter().map(|e| e.prefix.len()).collect();
    let splice = splice_index(&prefix_lens, lt, visual_tokens);
    for (i, e) in examples.iter().enumerate() {
        let row: Vec<u32> = e.prefix.iter().chain(&e.suffix).chain(&e.answer).copied().collect();
        ids[i * lt..i * lt + row.len()].copy_from_slice(&row);
        qids[i * lq..i * lq + e.query.len()].copy_from_slice(&e.query);
        let start = e.prefix.len() + visual_tokens + e.suffix.len();
        for (j, &t) in e.answer.iter().enumerate() {
            positions.push((i * l + start + j - 1) as u32);
            targets.push(t);
        }
    }
    let n = positions.len();
    Ok(Batch {
        image_index: Tensor::from_vec(examples.iter().map(|e| e.image as u32).collect::<Vec<_>>(), b, device)?,
        text_ids: Tensor::from_vec(ids, (b, lt), device)?,
        prefix_lens,
        splice_index: Tensor::from_vec(splice, b * l, device)?,
        loss_positions: Tensor::from_vec(positions, n, device)?,
        targets: Tensor::from_vec(targets, n, device)?,
        query_ids: Tensor::from_vec(qids, (b, lq), device)?,
        query_lens: examples.iter().map(|e| e.query.len()).collect(),
        visual_tokens,
    })
}
