//! LLaVA's evaluation files.
//!
//! * Question JSONL, one object per line: `{"question_id", "image", "text", ...}`, read by
//!   `llava/eval/model_vqa_loader.py` (`eval_model`); extra fields (POPE's and MME's `category`, ...)
//!   are kept in [`Question::extra`].
//! * ScienceQA's question file, a JSON array of conversation items `{"id", "image"?, "conversations":
//!   [{"from", "value"}, ...]}`, read by `llava/eval/model_vqa_science.py` (`eval_model`).
//! * Answer JSONL, one line per question, exactly as both scripts write it:
//!   `json.dumps({"question_id", "prompt", "text", "answer_id", "model_id", "metadata": {}}) + "\n"`,
//!   with `answer_id = shortuuid.uuid()` (22 characters of the base-57 alphabet [`SHORTUUID_ALPHABET`]).
//!
//! Readers of inputs to generation ([`read_questions`], [`read_scienceqa_items`]) skip a bad line and
//! report it ([`Loaded::skipped`], with file and line); the reader of answers for scoring
//! ([`read_answers`]) stops at the first bad line with an error naming file and line, as the reference
//! scorers would fail on it.
use crate::error::{Error, LineIssue, Result};
use crate::prompt;
use crate::pyjson;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A question id as it appears in the files: LLaVA uses integers (POPE) and strings (GQA, TextVQA,
/// MME, ScienceQA). The two kinds never compare equal (`1 != "1"`), as for Python dict keys; the
/// reference scorers look answers up by this value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuestionId {
    /// A JSON integer.
    Int(i64),
    /// A JSON string.
    Str(String),
}

impl QuestionId {
    /// From a JSON value: an integer or a string; `None` for anything else.
    pub fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Number(n) => n.as_i64().map(QuestionId::Int),
            Value::String(s) => Some(QuestionId::Str(s.clone())),
            _ => None,
        }
    }
    /// As a JSON value.
    pub fn to_value(&self) -> Value {
        match self {
            QuestionId::Int(i) => Value::from(*i),
            QuestionId::Str(s) => Value::from(s.as_str()),
        }
    }
    /// The string, if this is a string id.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            QuestionId::Str(s) => Some(s),
            QuestionId::Int(_) => None,
        }
    }
}

impl fmt::Display for QuestionId {
    /// As JSON: `17` or `"17"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuestionId::Int(i) => write!(f, "{i}"),
            QuestionId::Str(s) => write!(f, "{}", Value::from(s.as_str())),
        }
    }
}

impl Serialize for QuestionId {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            QuestionId::Int(i) => s.serialize_i64(*i),
            QuestionId::Str(x) => s.serialize_str(x),
        }
    }
}

impl<'de> Deserialize<'de> for QuestionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        QuestionId::from_value(&v)
            .ok_or_else(|| serde::de::Error::custom(format!("question id must be an integer or a string, got {v}")))
    }
}

/// One line of a LLaVA question JSONL file.
#[derive(Clone, Debug, PartialEq)]
pub struct Question {
    /// `question_id`.
    pub question_id: QuestionId,
    /// `image`, a path relative to the image folder (absent for text-only questions).
    pub image: Option<String>,
    /// `text`, the question as given to the model (LLaVA's files include the prompt suffix).
    pub text: String,
    /// Every other field, passed through (e.g. POPE's and MME's `category`).
    pub extra: Map<String, Value>,
}

impl Question {
    /// From one parsed JSON line. Errors name the missing or mistyped field.
    pub fn from_json(v: Value) -> std::result::Result<Self, String> {
        let Value::Object(mut m) = v else { return Err("not a JSON object".into()) };
        let question_id = match m.remove("question_id") {
            None => return Err("missing field `question_id`".into()),
            Some(v) => QuestionId::from_value(&v).ok_or("`question_id` must be an integer or a string")?,
        };
        let text = match m.remove("text") {
            Some(Value::String(s)) => s,
            None => return Err("missing field `text`".into()),
            Some(_) => return Err("`text` must be a string".into()),
        };
        let image = match m.remove("image") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err("`image` must be a string".into()),
        };
        Ok(Question { question_id, image, text, extra: m })
    }

    /// `category` (POPE, MME), if present and a string.
    pub fn category(&self) -> Option<&str> {
        self.extra.get("category").and_then(Value::as_str)
    }
}

/// One turn of a ScienceQA conversation item.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Turn {
    /// `from` (`"human"` or `"gpt"`).
    pub from: String,
    /// `value`, the turn's text.
    pub value: String,
}

/// One item of LLaVA's ScienceQA question file (`llava_test_CQM-A.json`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ScienceQaItem {
    /// `id`, the ScienceQA problem id (a string).
    pub id: QuestionId,
    /// `image`, relative to the image folder (absent for text-only problems).
    #[serde(default)]
    pub image: Option<String>,
    /// `conversations`; the first turn is the question.
    pub conversations: Vec<Turn>,
}

impl ScienceQaItem {
    /// The item as the generation loop uses it (see [`prompt::scienceqa_prompt`]); `single_pred` is
    /// `--single-pred-prompt`, which LLaVA-1.5's `scripts/v1_5/eval/sqa.sh` passes.
    pub fn to_eval_item(&self, single_pred: bool) -> EvalItem {
        let first = self.conversations.first().map(|t| t.value.as_str()).unwrap_or("");
        let (text, prompt) = prompt::scienceqa_prompt(first, self.image.is_some(), single_pred);
        EvalItem { question_id: self.id.clone(), image: self.image.clone(), text, prompt, extra: Map::new() }
    }
}

/// A question ready for generation, from either file format.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalItem {
    /// Id written to the answer line.
    pub question_id: QuestionId,
    /// Image path relative to the image folder.
    pub image: Option<String>,
    /// The question text given to the model after the image token ([`prompt::user_turn`]).
    pub text: String,
    /// The string written to the answer line's `"prompt"`.
    pub prompt: String,
    /// Pass-through fields of the question line.
    pub extra: Map<String, Value>,
}

impl From<Question> for EvalItem {
    /// `model_vqa_loader.py`: the answer's `"prompt"` is the question's `text`.
    fn from(q: Question) -> Self {
        EvalItem { question_id: q.question_id, image: q.image, prompt: q.text.clone(), text: q.text, extra: q.extra }
    }
}

/// Items read from a file, with the lines that were skipped.
#[derive(Clone, Debug)]
pub struct Loaded<T> {
    /// Items in file order.
    pub items: Vec<T>,
    /// The 1-based line (for a JSON array file: item) number of each item, parallel to `items`.
    pub lines: Vec<usize>,
    /// Lines skipped as malformed (file, line, reason).
    pub skipped: Vec<LineIssue>,
}

impl<T> Loaded<T> {
    /// Chunk `chunk_idx` of `num_chunks`, as `model_vqa_loader.py`'s `--num-chunks` / `--chunk-idx`
    /// split the questions (`split_list` / `get_chunk`): chunks of ⌈len / num_chunks⌉ items in file
    /// order, so fewer than `num_chunks` chunks when the division is uneven. A `chunk_idx` past the
    /// last chunk gives no items (the reference raises IndexError there; an array job of a fixed size
    /// then finishes instead). Each skipped line goes to the chunk whose items surround it, so every
    /// bad line is reported by exactly one chunk. `num_chunks` = 0 is taken as 1.
    pub fn chunk(self, num_chunks: usize, chunk_idx: usize) -> Self {
        let len = self.items.len();
        let size = len.div_ceil(num_chunks.max(1)).max(1);
        let (start, end) =
            (chunk_idx.saturating_mul(size).min(len), chunk_idx.saturating_add(1).saturating_mul(size).min(len));
        // Lines owned by this chunk: from its first item's line (from the start for chunk 0) up to the
        // next chunk's first item's line (to the end for the last chunk with items).
        let line_at = |i: usize| if i < len { self.lines[i] } else { usize::MAX };
        let lo = if chunk_idx == 0 { 0 } else { line_at(start) };
        let hi = line_at(end);
        let skipped = self.skipped.into_iter().filter(|b| (lo..hi).contains(&b.line)).collect();
        let mut items = self.items;
        let mut lines = self.lines;
        items.truncate(end);
        lines.truncate(end);
        Loaded { items: items.split_off(start), lines: lines.split_off(start), skipped }
    }
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()].iter().filter(|&&b| b == b'\n').count();
        Error::line(path, line, "not valid UTF-8")
    })
}

/// Reads a LLaVA question JSONL file. Blank lines are ignored; a malformed line is skipped and
/// reported in [`Loaded::skipped`]. Errors: the file cannot be read or is not UTF-8.
pub fn read_questions(path: &Path) -> Result<Loaded<Question>> {
    let text = read_text(path)?;
    let mut items = Vec::new();
    let mut lines = Vec::new();
    let mut skipped = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<Value>(line)
            .map_err(|e| format!("malformed JSON: {e}"))
            .and_then(Question::from_json);
        match parsed {
            Ok(q) => {
                items.push(q);
                lines.push(i + 1);
            }
            Err(message) => skipped.push(LineIssue { path: path.to_path_buf(), line: i + 1, message }),
        }
    }
    Ok(Loaded { items, lines, skipped })
}

/// Reads LLaVA's ScienceQA question file (a JSON array). A malformed item is skipped and reported
/// with its 1-based item number as `line`. Errors: unreadable, not JSON, or not an array.
pub fn read_scienceqa_items(path: &Path) -> Result<Loaded<ScienceQaItem>> {
    let text = read_text(path)?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| Error::line(path, e.line(), format!("malformed JSON: {e}")))?;
    let Value::Array(arr) = v else { return Err(Error::file(path, "expected a JSON array of conversation items")) };
    let mut items = Vec::new();
    let mut lines = Vec::new();
    let mut skipped = Vec::new();
    for (i, item) in arr.into_iter().enumerate() {
        match serde_json::from_value::<ScienceQaItem>(item) {
            Ok(x) if !x.conversations.is_empty() => {
                items.push(x);
                lines.push(i + 1);
            }
            Ok(_) => skipped.push(LineIssue {
                path: path.to_path_buf(),
                line: i + 1,
                message: "item has no conversation turns".into(),
            }),
            Err(e) => skipped.push(LineIssue {
                path: path.to_path_buf(),
                line: i + 1,
                message: format!("item {}: {e}", i + 1),
            }),
        }
    }
    Ok(Loaded { items, lines, skipped })
}

/// One answer line as the scorers need it.
#[derive(Clone, Debug, PartialEq)]
pub struct AnswerLine {
    /// 1-based line number in the answers file.
    pub line: usize,
    /// `question_id`.
    pub question_id: QuestionId,
    /// `prompt`.
    pub prompt: String,
    /// `text`, the model's answer.
    pub text: String,
}

fn parse_answer(line: &str) -> std::result::Result<(QuestionId, String, String), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("malformed JSON: {e}"))?;
    let Value::Object(m) = v else { return Err("not a JSON object".into()) };
    let qid = m.get("question_id").ok_or("missing field `question_id`")?;
    let qid = QuestionId::from_value(qid).ok_or("`question_id` must be an integer or a string")?;
    let s = |k: &str| match m.get(k) {
        Some(Value::String(s)) => Ok(s.clone()),
        None => Err(format!("missing field `{k}`")),
        Some(_) => Err(format!("`{k}` must be a string")),
    };
    Ok((qid, s("prompt")?, s("text")?))
}

/// Reads an answers JSONL file for scoring, in file order. Blank lines are ignored. Errors: the file
/// cannot be read, a line is malformed or lacks `question_id`/`prompt`/`text` (file and line
/// named), or the file holds no answers.
pub fn read_answers(path: &Path) -> Result<Vec<AnswerLine>> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (question_id, prompt, text) = parse_answer(line).map_err(|m| Error::line(path, i + 1, m))?;
        out.push(AnswerLine { line: i + 1, question_id, prompt, text });
    }
    if out.is_empty() {
        return Err(Error::file(path, "no answers (empty file)"));
    }
    Ok(out)
}

/// shortuuid's default alphabet (`shortuuid.get_alphabet()`): digits and letters without `0 1 I O l`.
pub const SHORTUUID_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// A `shortuuid.uuid()`-style id: a random version-4 UUID written in base 57 over
/// [`SHORTUUID_ALPHABET`], most significant digit first, padded to 22 characters (shortuuid's
/// `encode` / `int_to_string`).
pub fn shortuuid<R: Rng + ?Sized>(rng: &mut R) -> String {
    let mut n: u128 = rng.random();
    // Version 4, variant 10 (RFC 4122), as uuid.uuid4() sets them.
    n = (n & !(0xf << 76)) | (0x4 << 76);
    n = (n & !(0x3 << 62)) | (0x2 << 62);
    let base = SHORTUUID_ALPHABET.len() as u128;
    let mut digits = Vec::with_capacity(22);
    while n > 0 {
        digits.push(SHORTUUID_ALPHABET[(n % base) as usize]);
        n /= base;
    }
    while digits.len() < 22 {
        digits.push(SHORTUUID_ALPHABET[0]);
    }
    digits.reverse();
    String::from_utf8(digits).expect("ASCII alphabet")
}

/// The bytes of one answer line without its newline, as `model_vqa_loader.py` writes it:
/// `json.dumps({"question_id": ..., "prompt": ..., "text": ..., "answer_id": ..., "model_id": ...,
/// "metadata": {}})`.
pub fn answer_line_json(question_id: &QuestionId, prompt: &str, text: &str, answer_id: &str, model_id: &str) -> String {
    let mut out = String::with_capacity(96 + prompt.len() + text.len());
    out.push_str("{\"question_id\": ");
    pyjson::write_value(&mut out, &question_id.to_value());
    out.push_str(", \"prompt\": ");
    pyjson::write_str(&mut out, prompt);
    out.push_str(", \"text\": ");
    pyjson::write_str(&mut out, text);
    out.push_str(", \"answer_id\": ");
    pyjson::write_str(&mut out, answer_id);
    out.push_str(", \"model_id\": ");
    pyjson::write_str(&mut out, model_id);
    out.push_str(", \"metadata\": {}}");
    out
}

/// What [`AnswerWriter::open`] found in an existing answers file.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ResumeReport {
    /// Complete, valid answer lines already in the file (their questions are skipped on resume).
    pub kept: usize,
    /// Bytes of a torn last line (no newline, not a complete answer) that were cut off.
    pub torn_bytes_dropped: usize,
    /// The last line was a complete answer without its newline; the newline was added.
    pub newline_added: bool,
    /// Complete lines that are not valid answers: left in the file untouched, not counted as answered.
    pub bad_lines: Vec<LineIssue>,
}

/// Appends answer lines to a LLaVA answers file, one `write` + flush per answer, and resumes an
/// interrupted run.
///
/// On [`open`](Self::open) an existing file is read: a torn last line (the process died mid-write)
/// is cut back to the last complete line; every valid line marks its question answered. Answered is
/// keyed by `(question_id, prompt)`, because MME's question ids repeat (two questions per image share
/// the image path as id); [`answered_ids`](Self::answered_ids) gives the ids alone.
pub struct AnswerWriter {
    path: PathBuf,
    file: File,
    answered: HashSet<(QuestionId, String)>,
    ids: HashSet<QuestionId>,
    rng: ChaCha8Rng,
    keyed_seed: Option<u64>,
}

/// FNV-1a, 64 bits: a stable hash (the same on every platform and release) for keyed answer ids.
fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl AnswerWriter {
    /// Opens (creating it and its parent directory if needed), locks and repairs `path`. Errors: I/O;
    /// [`Error::File`] when another writer (in this or another process) holds the file.
    pub fn open(path: &Path) -> Result<(Self, ResumeReport)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut file =
            OpenOptions::new().read(true).append(true).create(true).open(path).map_err(|e| Error::io(path, e))?;
        // One writer per answers file: an OS lock, released when the writer is dropped or the process
        // ends (also by SIGKILL), so two runs cannot interleave their lines.
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::file(
                    path,
                    "is being written by another process (it holds the file's lock); wait for it to finish or use another answers file",
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(path, e)),
        }
        let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
        let mut report = ResumeReport::default();
        let complete_end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let mut body = &bytes[..complete_end];
        let tail = &bytes[complete_end..];
        if !tail.is_empty() {
            if std::str::from_utf8(tail).ok().is_some_and(|t| parse_answer(t).is_ok()) {
                file.write_all(b"\n").map_err(|e| Error::io(path, e))?;
                report.newline_added = true;
                body = &bytes[..];
            } else {
                file.set_len(complete_end as u64).map_err(|e| Error::io(path, e))?;
                report.torn_bytes_dropped = tail.len();
            }
        }
        let mut answered = HashSet::new();
        let mut ids = HashSet::new();
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let parsed = std::str::from_utf8(line).map_err(|_| "not valid UTF-8".to_string()).and_then(parse_answer);
            match parsed {
                Ok((qid, prompt, _)) => {
                    ids.insert(qid.clone());
                    answered.insert((qid, prompt));
                    report.kept += 1;
                }
                Err(message) => report.bad_lines.push(LineIssue { path: path.to_path_buf(), line: i + 1, message }),
            }
        }
        let writer = AnswerWriter {
            path: path.to_path_buf(),
            file,
            answered,
            ids,
            rng: ChaCha8Rng::from_os_rng(),
            keyed_seed: None,
        };
        Ok((writer, report))
    }

    /// Draws answer ids from a generator seeded with `seed` (for reproducible files in tests).
    pub fn with_id_seed(mut self, seed: u64) -> Self {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
        self
    }

    /// Draws each answer id from a generator seeded with a stable hash of `(seed, question_id,
    /// prompt)`: the id of a question does not depend on which questions were answered before it, so
    /// an interrupted and resumed run writes the same bytes as an uninterrupted one.
    pub fn with_keyed_ids(mut self, seed: u64) -> Self {
        self.keyed_seed = Some(seed);
        self
    }

    /// Question ids with at least one answer in the file.
    pub fn answered_ids(&self) -> &HashSet<QuestionId> {
        &self.ids
    }

    /// Whether the question `(question_id, prompt)` has an answer in the file.
    pub fn is_answered(&self, question_id: &QuestionId, prompt: &str) -> bool {
        self.answered.contains(&(question_id.clone(), prompt.to_string()))
    }

    /// Number of answered questions.
    pub fn len(&self) -> usize {
        self.answered.len()
    }

    /// No answers yet.
    pub fn is_empty(&self) -> bool {
        self.answered.is_empty()
    }

    /// The answers file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one answer line (one `write` of the whole line, then a flush) and returns its
    /// `answer_id`. Errors: I/O.
    pub fn write(&mut self, question_id: &QuestionId, prompt: &str, text: &str, model_id: &str) -> Result<String> {
        let answer_id = match self.keyed_seed {
            Some(seed) => {
                let h = fnv1a(question_id.to_string().as_bytes(), fnv1a(&seed.to_le_bytes(), 0xcbf2_9ce4_8422_2325));
                shortuuid(&mut ChaCha8Rng::seed_from_u64(fnv1a(prompt.as_bytes(), fnv1a(b"\n", h))))
            }
            None => shortuuid(&mut self.rng),
        };
        let mut line = answer_line_json(question_id, prompt, text, &answer_id, model_id);
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(|e| Error::io(&self.path, e))?;
        self.file.flush().map_err(|e| Error::io(&self.path, e))?;
        self.ids.insert(question_id.clone());
        self.answered.insert((question_id.clone(), prompt.to_string()));
        Ok(answer_id)
    }
}

#[cfg(test)]
mod chunk_tests {
    use super::*;

    fn loaded(n: usize, bad: &[usize]) -> Loaded<usize> {
        // Items on the lines that are not bad, numbered from 1.
        let lines: Vec<usize> = (1..=n + bad.len()).filter(|l| !bad.contains(l)).collect();
        let skipped =
            bad.iter().map(|&line| LineIssue { path: "q.jsonl".into(), line, message: "bad".into() }).collect();
        Loaded { items: (0..n).collect(), lines, skipped }
    }

    /// LLaVA's `split_list(lst, n)`: chunk size ceil(len / n), chunks `lst[i:i + size]`.
    #[test]
    fn chunks_follow_split_list_and_each_bad_line_goes_to_one_chunk() {
        // (items, chunks, expected item ranges), sizes worked out from ceil(len / n) by hand.
        type Case = (usize, usize, &'static [(usize, usize)]);
        let cases: [Case; 4] = [
            (10, 3, &[(0, 4), (4, 8), (8, 10)]),
            (5, 4, &[(0, 2), (2, 4), (4, 5), (5, 5)]),
            (3, 1, &[(0, 3)]),
            (2, 3, &[(0, 1), (1, 2), (2, 2)]),
        ];
        for (n, chunks, want) in cases {
            for (k, &(a, b)) in want.iter().enumerate() {
                let c = loaded(n, &[]).chunk(chunks, k);
                assert_eq!(c.items, (a..b).collect::<Vec<_>>(), "{n} items, chunk {k} of {chunks}");
            }
        }
        // Bad lines 1, 5 and 13 among 10 items (lines 2-4, 6-12): chunks of 4 own lines [0, 7), [7, 11),
        // [11, ∞).
        let owners: Vec<Vec<usize>> =
            (0..3).map(|k| loaded(10, &[1, 5, 13]).chunk(3, k).skipped.iter().map(|b| b.line).collect()).collect();
        assert_eq!(owners, [vec![1, 5], vec![], vec![13]]);
        // Only bad lines: chunk 0 reports them.
        assert_eq!(loaded(0, &[1, 2]).chunk(2, 0).skipped.len(), 2);
        assert!(loaded(0, &[1, 2]).chunk(2, 1).skipped.is_empty());
    }
}
