#![warn(missing_docs)]
//! LLaVA's evaluation formats and scorers that give the reference numbers.
//!
//! The paper (arXiv 2411.03312, §4) evaluates with LLaVA-1.5's scripts; this crate reads and writes
//! their files and re-implements their scoring rules, so that a score computed here equals the one the
//! reference Python prints on the same answers file.
//!
//! * [`formats`]: question JSONL (`llava/eval/model_vqa_loader.py`), ScienceQA's conversation items
//!   (`llava/eval/model_vqa_science.py`), answer JSONL lines as those scripts write them, and
//!   [`AnswerWriter`], which appends answers line by line and resumes an interrupted run.
//! * [`prompt`]: the prompt suffixes LLaVA's evaluation adds (`docs/Evaluation.md`).
//! * Scorers: [`pope`], [`gqa`], [`scienceqa`], [`textvqa`] (with the m4c answer normalisation in
//!   [`m4c`]) and [`mme`]. Each returns a serde result (JSON) with a short text table.
//! * [`pyjson`]: Python `json.dumps` byte-compatible encoding and Python string semantics (`strip`,
//!   `split`), which the reference rules depend on.
//!
//! * [`generation`]: answers a question file with a loaded engine model as `model_vqa_loader.py` /
//!   `model_vqa_science.py` do (greedy, resumable, bad lines and missing images reported and skipped);
//!   [`reduction`] chooses how the model is made to read V visual tokens (the one place to add a
//!   training-free token-reduction method).
//! * [`benchmark`]: one entry point over the scorers, with each benchmark's headline number.
//! * [`grid`]: the (model × V) evaluation grid through the sweep crate's cell machinery, scored into
//!   the scaling crate's CSV schema.
//!
//! Parity with the reference scorers is tested on committed fixtures produced by
//! `tests/fixtures/make_fixtures.py`, which runs the reference Python on small made-up files.

pub mod benchmark;
pub mod error;
pub mod formats;
pub mod generation;
pub mod gqa;
pub mod grid;
pub mod m4c;
pub mod mme;
pub mod pope;
pub mod prompt;
pub mod pyjson;
pub mod reduction;
pub mod scienceqa;
pub mod table;
pub mod textvqa;

pub use error::{Error, LineIssue, Result};
pub use formats::{
    read_answers, read_questions, read_scienceqa_items, AnswerLine, AnswerWriter, EvalItem, Loaded, Question,
    QuestionId, ResumeReport, ScienceQaItem,
};
