//! Answer generation for a LLaVA question file with a loaded engine model, as
//! `llava/eval/model_vqa_loader.py` (question JSONL) and `llava/eval/model_vqa_science.py`
//! (ScienceQA's conversation items) do it:
//!
//! * the user turn is `"<image>\n" + text` (only `text` for a ScienceQA item without an image), put in
//!   the conversation template (`--conv-mode`, default by LLM family), generated greedily (the
//!   reference scripts' `--temperature 0`), at most `max_new_tokens` (the loader's default 128);
//! * the answer is the decoded new tokens without special tokens, Python-`strip()`ped (ScienceQA:
//!   also a trailing stop string removed and stripped again);
//! * each answer line is appended and flushed as soon as it is generated ([`AnswerWriter`]); a rerun
//!   skips every `(question_id, prompt)` already answered and repairs a torn last line;
//! * a bad question line, a missing or unreadable image and a question that does not fit the context
//!   window are reported with file and line and skipped, never fatal ([`EvalSummary`]).
//!
//! The model is loaded once by the caller; images are read, decoded and preprocessed on a loader
//! thread one question ahead of the model (the reference's `DataLoader` workers), so that the
//! per-question work outside the model is tokenisation and one line of output.
use crate::error::{Error, LineIssue, Result};
use crate::formats::{read_questions, read_scienceqa_items, AnswerWriter, EvalItem, Loaded, ResumeReport};
use crate::pyjson;
use crate::reduction::Reducer;
use candle_core::{Device, Tensor};
use engine::generate::{generate_with_fastv, GenerateConfig};
use engine::model::Vlm;
use engine::text::{input_embeddings, Template};
use engine::vision::{load_image, ImageProcessorConfig};
use models::decoder::FastV;
use serde::Serialize;
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

/// The loader's default `--max_new_tokens`.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 128;

/// Which of LLaVA's question files a path holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestionFormat {
    /// Question JSONL (`model_vqa_loader.py`).
    Jsonl,
    /// ScienceQA's JSON array of conversation items (`model_vqa_science.py`).
    ScienceQa,
}

/// Reads a question file of either format, told apart by its first non-blank character (`[`: a
/// ScienceQA JSON array). `single_pred` is ScienceQA's `--single-pred-prompt`. Bad lines (items) are
/// skipped and reported. Errors: the file cannot be read, is empty, or (ScienceQA) is not a JSON array.
pub fn load_items(path: &Path, single_pred: bool) -> Result<(QuestionFormat, Loaded<EvalItem>)> {
    let head = std::fs::read(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    let first = head.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => Err(Error::File { path: path.to_path_buf(), message: "no questions (empty file)".into() }),
        Some(b'[') => {
            let l = read_scienceqa_items(path)?;
            let items = l.items.iter().map(|x| x.to_eval_item(single_pred)).collect();
            Ok((QuestionFormat::ScienceQa, Loaded { items, lines: l.lines, skipped: l.skipped }))
        }
        Some(_) => {
            let l = read_questions(path)?;
            let items = l.items.into_iter().map(EvalItem::from).collect();
            Ok((QuestionFormat::Jsonl, Loaded { items, lines: l.lines, skipped: l.skipped }))
        }
    }
}

/// LLaVA's `get_model_name_from_path` (`llava/mm_utils.py`), the answers' `model_id`: the last path
/// component, or `<parent>_<last>` when the last one starts with `checkpoint-`.
pub fn model_id_from_path(path: &Path) -> String {
    let s = path.to_string_lossy().replace('\\', "/");
    let parts: Vec<&str> = s.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        [.., parent, last] if last.starts_with("checkpoint-") => format!("{parent}_{last}"),
        [.., last] => last.to_string(),
        [] => String::new(),
    }
}

/// A loaded model set up to answer evaluation questions: template, stop tokens, token budget.
pub struct Answerer<'a> {
    vlm: &'a mut Vlm,
    template: Template,
    stop_token_ids: Vec<u32>,
    reducer: Reducer,
    max_new_tokens: usize,
}

/// Time spent in one answer.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnswerTiming {
    /// Tokenising the templated prompt (outside the model).
    pub tokenize_s: f64,
    /// Vision tower, compressor / reduction, projector, prefill and decode.
    pub model_s: f64,
}

impl<'a> Answerer<'a> {
    /// `template`: `--conv-mode`, `None` for the checkpoint's family default. Errors: the tokenizer
    /// lacks the template's special tokens.
    pub fn new(
        vlm: &'a mut Vlm,
        template: Option<Template>,
        reducer: Reducer,
        max_new_tokens: usize,
    ) -> engine::Result<Self> {
        let template = template.unwrap_or(vlm.template());
        let stop_token_ids = vlm.tokenizer().stop_token_ids(template)?;
        Ok(Answerer { vlm, template, stop_token_ids, reducer, max_new_tokens })
    }

    /// The conversation template in use.
    pub fn template(&self) -> Template {
        self.template
    }

    /// V, visual tokens per image.
    pub fn visual_tokens(&self) -> usize {
        self.reducer.visual_tokens()
    }

    /// Q, the mean number of text tokens of the templated prompts of `items` (the `<image>` marker
    /// not counted), the `text_tokens` of a scaling-law row. Errors: tokenizer errors.
    pub fn mean_text_tokens(&self, items: &[EvalItem]) -> engine::Result<f64> {
        if items.is_empty() {
            return Ok(0.0);
        }
        let mut total = 0usize;
        for it in items {
            let prompt = self.template.prompt(&it.text, it.image.is_some());
            total += self.vlm.tokenizer().tokenize_with_image(&prompt)?.text_len();
        }
        Ok(total as f64 / items.len() as f64)
    }

    /// Greedy answer to `text` about the preprocessed image `pixels` (1, 3, S, S) (`None`: a
    /// text-only question), before any stripping. Errors: the prompt does not fit the context window
    /// (checked before the model runs), model errors.
    pub fn answer(&mut self, pixels: Option<&Tensor>, text: &str) -> engine::Result<(String, AnswerTiming)> {
        let t0 = Instant::now();
        let prompt = self.template.prompt(text, pixels.is_some());
        let tokens = self.vlm.tokenizer().tokenize_with_image(&prompt)?;
        let v = if pixels.is_some() { self.reducer.entering_tokens() } else { 0 };
        let max = self.vlm.decoder().config().max_position_embeddings;
        if tokens.input_len(v) > max {
            return Err(engine::Error::ContextWindow { len: tokens.input_len(v), max });
        }
        let t1 = Instant::now();
        let visual = match pixels {
            Some(p) => Some(self.reducer.visual_embeddings(self.vlm, p, text)?),
            None => None,
        };
        let embeds = input_embeddings(self.vlm.decoder(), &tokens, visual.as_ref())?;
        let cfg = GenerateConfig {
            max_new_tokens: self.max_new_tokens,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop_token_ids: self.stop_token_ids.clone(),
        };
        // FastV: every patch token enters, the V kept ones survive layer K.
        let fastv = match (&visual, self.reducer.reduction().and_then(|r| r.fastv())) {
            (Some(vis), Some((layer, keep))) => {
                let image_len = vis.dim(1)?;
                let image_start = *tokens
                    .image_positions(image_len)
                    .first()
                    .ok_or_else(|| engine::Error::Invalid("FastV needs an <image> in the prompt".into()))?;
                Some(FastV { layer, image_start, image_len, keep })
            }
            _ => None,
        };
        let gen = generate_with_fastv(self.vlm.decoder_mut(), &embeds, &cfg, fastv.as_ref(), |_| Ok(()))?;
        let out = self.vlm.tokenizer().decode(&gen.tokens, true)?;
        let timing = AnswerTiming { tokenize_s: (t1 - t0).as_secs_f64(), model_s: t1.elapsed().as_secs_f64() };
        Ok((out, timing))
    }

    /// The string `stop` of the template (`sep2` for `vicuna_v1`, `sep` for ChatML), which
    /// `model_vqa_science.py` removes from the end of an answer.
    fn stop_str(&self) -> &'static str {
        match self.template {
            Template::VicunaV1 => "</s>",
            Template::Qwen15 => "<|im_end|>",
        }
    }
}

/// What one evaluation run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EvalSummary {
    /// Questions read (valid lines).
    pub questions: usize,
    /// Of those, already answered in the answers file before this run (skipped).
    pub already_answered: usize,
    /// Answered and written now.
    pub answered: usize,
    /// Question lines skipped as malformed.
    pub bad_lines: Vec<LineIssue>,
    /// Questions skipped now: missing or unreadable image, prompt too long for the context window.
    pub skipped: Vec<LineIssue>,
    /// What opening the answers file found (kept lines, a repaired torn line).
    pub resume: ResumeReport,
    /// Wall time of the answering loop, seconds.
    pub wall_seconds: f64,
    /// Time inside the model (vision, reduction, projector, prefill, decode), seconds.
    pub model_seconds: f64,
    /// Mean time per answered question spent outside the model on the answering thread (waiting
    /// for the loader, tokenising, writing the line), milliseconds.
    pub overhead_ms_per_question: Option<f64>,
    /// Of [`overhead_ms_per_question`](Self::overhead_ms_per_question), the mean time the answering
    /// thread waited for the loader thread (non-zero when images take longer to load than the model
    /// takes to answer), milliseconds.
    pub loader_wait_ms_per_question: Option<f64>,
    /// Mean time per answered question spent by the loader thread reading, decoding and
    /// preprocessing the image (overlapped with the model), milliseconds.
    pub image_ms_per_question: Option<f64>,
}

impl EvalSummary {
    /// Questions answered per second of wall time.
    pub fn questions_per_second(&self) -> Option<f64> {
        (self.wall_seconds > 0.0 && self.answered > 0).then(|| self.answered as f64 / self.wall_seconds)
    }
}

/// Progress after each question: done and total of this run's pending questions.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Pending questions handled so far (answered or skipped).
    pub done: usize,
    /// Pending questions of this run.
    pub total: usize,
}

/// A loaded image, or why it could not be.
type LoadedImage = std::result::Result<Option<Tensor>, String>;

fn load_pixels(proc: &ImageProcessorConfig, folder: &Path, image: Option<&str>) -> LoadedImage {
    let Some(rel) = image else { return Ok(None) };
    let path = folder.join(rel);
    if !path.is_file() {
        return Err(format!("image {} not found", path.display()));
    }
    let img = load_image(&path).map_err(|e| format!("image {}: {e}", path.display()))?;
    let pixels = proc.preprocess(&img, &Device::Cpu).and_then(|t| Ok(t.unsqueeze(0)?));
    pixels.map(Some).map_err(|e| format!("image {}: {e}", path.display()))
}

/// Answers every question of `items` not yet in `writer`'s file, appending each answer as it comes.
///
/// `questions_path` names the question file in reports; `format` selects the ScienceQA stop-string
/// rule; `model_id` is written to every line (see [`model_id_from_path`]); `resume` and `bad_lines`
/// (the writer's report and the loader's skipped lines) are carried into the summary.
///
/// Errors: writing the answers file; a model error other than a too-long prompt or an unusable image
/// (those are skipped and reported).
#[allow(clippy::too_many_arguments)]
pub fn answer_all(
    answerer: &mut Answerer,
    items: &Loaded<EvalItem>,
    format: QuestionFormat,
    questions_path: &Path,
    image_folder: &Path,
    writer: &mut AnswerWriter,
    model_id: &str,
    resume: ResumeReport,
    progress: &mut dyn FnMut(Progress),
) -> Result<EvalSummary> {
    let mut summary =
        EvalSummary { questions: items.items.len(), resume, bad_lines: items.skipped.clone(), ..Default::default() };
    let pending: Vec<usize> = (0..items.items.len())
        .filter(|&i| !writer.is_answered(&items.items[i].question_id, &items.items[i].prompt))
        .collect();
    summary.already_answered = items.items.len() - pending.len();
    let total = pending.len();
    let proc = answerer.vlm.image_processor().clone();
    let started = Instant::now();
    let mut image_s = 0.0;
    let mut wait_s = 0.0;
    progress(Progress { done: 0, total });
    let (tx, rx) = mpsc::sync_channel::<(usize, LoadedImage, f64)>(2);
    let result = std::thread::scope(|s| -> Result<()> {
        let pending_ref = &pending;
        s.spawn(move || {
            for &i in pending_ref {
                let t = Instant::now();
                let loaded = load_pixels(&proc, image_folder, items.items[i].image.as_deref());
                if tx.send((i, loaded, t.elapsed().as_secs_f64())).is_err() {
                    break; // the answering loop stopped
                }
            }
        });
        // `rx` is moved in here: an early return drops it, which stops the loader thread.
        let receiver = rx;
        for done in 0.. {
            let t = Instant::now();
            let Ok((i, loaded, load_s)) = receiver.recv() else { break };
            wait_s += t.elapsed().as_secs_f64();
            image_s += load_s;
            let item = &items.items[i];
            let line = items.lines[i];
            let issue = |message: String| LineIssue { path: questions_path.to_path_buf(), line, message };
            match loaded {
                Err(message) => summary.skipped.push(issue(message)),
                Ok(pixels) => match answerer.answer(pixels.as_ref(), &item.text) {
                    Ok((raw, timing)) => {
                        summary.model_seconds += timing.model_s;
                        let mut text = pyjson::strip(&raw);
                        if format == QuestionFormat::ScienceQa {
                            text = pyjson::strip(text.strip_suffix(answerer.stop_str()).unwrap_or(text));
                        }
                        writer.write(&item.question_id, &item.prompt, text, model_id)?;
                        summary.answered += 1;
                    }
                    Err(e @ (engine::Error::ContextWindow { .. } | engine::Error::Invalid(_))) => {
                        summary.skipped.push(issue(e.to_string()))
                    }
                    Err(e) => return Err(Error::Model { path: questions_path.to_path_buf(), line, source: e }),
                },
            }
            progress(Progress { done: done + 1, total });
        }
        Ok(())
    });
    summary.wall_seconds = started.elapsed().as_secs_f64();
    result?;
    if summary.answered > 0 {
        let n = summary.answered as f64;
        summary.overhead_ms_per_question = Some((summary.wall_seconds - summary.model_seconds) * 1e3 / n);
        summary.image_ms_per_question = Some(image_s * 1e3 / n);
        summary.loader_wait_ms_per_question = Some(wait_s * 1e3 / n);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::model_id_from_path;
    use std::path::Path;

    #[test]
    fn model_id_as_llava_names_it() {
        // llava/mm_utils.py get_model_name_from_path: strip("/"), split("/"), checkpoint-* joined to its parent.
        assert_eq!(model_id_from_path(Path::new("/ckpts/llava-v1.5-7b/")), "llava-v1.5-7b");
        assert_eq!(model_id_from_path(Path::new("runs/llava-qwen/checkpoint-500")), "llava-qwen_checkpoint-500");
        assert_eq!(model_id_from_path(Path::new("tiny")), "tiny");
    }
}
