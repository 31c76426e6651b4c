//! The m4c / EvalAI answer normalisation and VQA accuracy, as LLaVA scores TextVQA.
//!
//! Source: `llava/eval/m4c_evaluator.py` of haotian-liu/LLaVA (itself from facebookresearch/mmf):
//! `EvalAIAnswerProcessor.__call__` ([`normalize`]) and `TextVQAAccuracyEvaluator`
//! (`_compute_answer_scores` → [`answer_scores`], `eval_pred_list` → [`vqa_accuracy`] per question).
//!
//! The rules, in order, as the reference applies them (including its quirks, which change scores):
//! 1. `word_tokenize`: lower-case; delete `,` and `?`; `'s` → ` 's`; strip.
//! 2. newlines and tabs → spaces; strip.
//! 3. `process_punctuation`: each of ``; / [ ] " { } ( ) = + \ _ - > < @ ` , ? !`` is deleted if the
//!    text (as it was before this step) has it next to a space, or has a comma between digits;
//!    otherwise it becomes a space. Then every `.` not followed by a (Unicode) digit is deleted — at
//!    most 32 of them, because the reference passes `re.UNICODE` (= 32) as `re.sub`'s `count`.
//! 4. `process_digit_article`: lower-case; split on whitespace; number words `none zero one … ten` →
//!    digits; drop the articles `a an the`; expand contractions without apostrophes (`dont` →
//!    `don't`, table [`CONTRACTIONS`]); join with single spaces.
use crate::pyjson;
use regex::Regex;
use std::collections::HashMap;
use std::sync::OnceLock;

/// Number words mapped to digits (`EvalAIAnswerProcessor.NUMBER_MAP`).
pub const NUMBER_MAP: [(&str, &str); 12] = [
    ("none", "0"),
    ("zero", "0"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
];

/// Articles removed (`EvalAIAnswerProcessor.ARTICLES`).
pub const ARTICLES: [&str; 3] = ["a", "an", "the"];

/// Punctuation handled by `process_punctuation` (`EvalAIAnswerProcessor.PUNCTUATIONS`).
pub const PUNCTUATIONS: [char; 21] =
    [';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',', '?', '!'];

/// Contractions written without apostrophes and their expansion (`EvalAIAnswerProcessor.CONTRACTIONS`;
/// the entries with capitals never match, because the text is lower-cased first).
pub const CONTRACTIONS: &[(&str, &str)] = &[
    ("aint", "ain't"),
    ("arent", "aren't"),
    ("cant", "can't"),
    ("couldve", "could've"),
    ("couldnt", "couldn't"),
    ("couldn'tve", "couldn't've"),
    ("couldnt've", "couldn't've"),
    ("didnt", "didn't"),
    ("doesnt", "doesn't"),
    ("dont", "don't"),
    ("hadnt", "hadn't"),
    ("hadnt've", "hadn't've"),
    ("hadn'tve", "hadn't've"),
    ("hasnt", "hasn't"),
    ("havent", "haven't"),
    ("hed", "he'd"),
    ("hed've", "he'd've"),
    ("he'dve", "he'd've"),
    ("hes", "he's"),
    ("howd", "how'd"),
    ("howll", "how'll"),
    ("hows", "how's"),
    ("Id've", "I'd've"),
    ("I'dve", "I'd've"),
    ("Im", "I'm"),
    ("Ive", "I've"),
    ("isnt", "isn't"),
    ("itd", "it'd"),
    ("itd've", "it'd've"),
    ("it'dve", "it'd've"),
    ("itll", "it'll"),
    ("let's", "let's"),
    ("maam", "ma'am"),
    ("mightnt", "mightn't"),
    ("mightnt've", "mightn't've"),
    ("mightn'tve", "mightn't've"),
    ("mightve", "might've"),
    ("mustnt", "mustn't"),
    ("mustve", "must've"),
    ("neednt", "needn't"),
    ("notve", "not've"),
    ("oclock", "o'clock"),
    ("oughtnt", "oughtn't"),
    ("ow's'at", "'ow's'at"),
    ("'ows'at", "'ow's'at"),
    ("'ow'sat", "'ow's'at"),
    ("shant", "shan't"),
    ("shed've", "she'd've"),
    ("she'dve", "she'd've"),
    ("she's", "she's"),
    ("shouldve", "should've"),
    ("shouldnt", "shouldn't"),
    ("shouldnt've", "shouldn't've"),
    ("shouldn'tve", "shouldn't've"),
    ("somebody'd", "somebodyd"),
    ("somebodyd've", "somebody'd've"),
    ("somebody'dve", "somebody'd've"),
    ("somebodyll", "somebody'll"),
    ("somebodys", "somebody's"),
    ("someoned", "someone'd"),
    ("someoned've", "someone'd've"),
    ("someone'dve", "someone'd've"),
    ("someonell", "someone'll"),
    ("someones", "someone's"),
    ("somethingd", "something'd"),
    ("somethingd've", "something'd've"),
    ("something'dve", "something'd've"),
    ("somethingll", "something'll"),
    ("thats", "that's"),
    ("thered", "there'd"),
    ("thered've", "there'd've"),
    ("there'dve", "there'd've"),
    ("therere", "there're"),
    ("theres", "there's"),
    ("theyd", "they'd"),
    ("theyd've", "they'd've"),
    ("they'dve", "they'd've"),
    ("theyll", "they'll"),
    ("theyre", "they're"),
    ("theyve", "they've"),
    ("twas", "'twas"),
    ("wasnt", "wasn't"),
    ("wed've", "we'd've"),
    ("we'dve", "we'd've"),
    ("weve", "we've"),
    ("werent", "weren't"),
    ("whatll", "what'll"),
    ("whatre", "what're"),
    ("whats", "what's"),
    ("whatve", "what've"),
    ("whens", "when's"),
    ("whered", "where'd"),
    ("wheres", "where's"),
    ("whereve", "where've"),
    ("whod", "who'd"),
    ("whod've", "who'd've"),
    ("who'dve", "who'd've"),
    ("wholl", "who'll"),
    ("whos", "who's"),
    ("whove", "who've"),
    ("whyll", "why'll"),
    ("whyre", "why're"),
    ("whys", "why's"),
    ("wont", "won't"),
    ("wouldve", "would've"),
    ("wouldnt", "wouldn't"),
    ("wouldnt've", "wouldn't've"),
    ("wouldn'tve", "wouldn't've"),
    ("yall", "y'all"),
    ("yall'll", "y'all'll"),
    ("y'allll", "y'all'll"),
    ("yall'd've", "y'all'd've"),
    ("y'alld've", "y'all'd've"),
    ("y'all'dve", "y'all'd've"),
    ("youd", "you'd"),
    ("youd've", "you'd've"),
    ("you'dve", "you'd've"),
    ("youll", "you'll"),
    ("youre", "you're"),
    ("youve", "you've"),
];

fn comma_between_digits() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| Regex::new(r"\d,+\d").expect("valid regex"))
}

fn starts_with_digit(s: &str) -> bool {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| Regex::new(r"\A\d").expect("valid regex")).is_match(s)
}

fn contractions() -> &'static HashMap<&'static str, &'static str> {
    static M: OnceLock<HashMap<&str, &str>> = OnceLock::new();
    M.get_or_init(|| CONTRACTIONS.iter().copied().collect())
}

fn process_punctuation(in_text: &str) -> String {
    let mut out = in_text.to_string();
    let comma = comma_between_digits().is_match(in_text);
    for p in PUNCTUATIONS {
        let spaced = in_text.contains(&format!("{p} ")) || in_text.contains(&format!(" {p}"));
        out = out.replace(p, if spaced || comma { "" } else { " " });
    }
    // PERIOD_STRIP: a '.' not followed by a digit, first 32 matches only.
    let mut result = String::with_capacity(out.len());
    let mut removed = 0;
    for (i, c) in out.char_indices() {
        if c == '.' && removed < 32 && !starts_with_digit(&out[i + 1..]) {
            removed += 1;
            continue;
        }
        result.push(c);
    }
    result
}

fn process_digit_article(in_text: &str) -> String {
    let lower = in_text.to_lowercase();
    let words: Vec<&str> = pyjson::split_whitespace(&lower)
        .map(|w| NUMBER_MAP.iter().find(|(k, _)| *k == w).map_or(w, |(_, v)| *v))
        .filter(|w| !ARTICLES.contains(w))
        .map(|w| contractions().get(w).copied().unwrap_or(w))
        .collect();
    words.join(" ")
}

/// `EvalAIAnswerProcessor.__call__`: the normalised form of an answer (see the module docs).
pub fn normalize(answer: &str) -> String {
    let lower = answer.to_lowercase();
    let tokenized = lower.replace([',', '?'], "").replace("'s", " 's");
    let item = pyjson::strip(&tokenized).replace(['\n', '\t'], " ");
    let item = pyjson::strip(&item);
    let item = process_punctuation(item);
    process_digit_article(&item)
}

/// `TextVQAAccuracyEvaluator._compute_answer_scores`: for each distinct normalised human answer `a`,
/// the mean over the 10 leave-one-out subsets of `min(1, #matches of a among the other 9 / 3)`.
/// Errors (the reference asserts) unless there are exactly 10 answers.
pub fn answer_scores(gt_answers: &[String]) -> Result<HashMap<String, f64>, String> {
    if gt_answers.len() != 10 {
        return Err(format!("expected 10 human answers, found {}", gt_answers.len()));
    }
    let answers: Vec<String> = gt_answers.iter().map(|a| normalize(a)).collect();
    let mut scores = HashMap::new();
    for unique in &answers {
        if scores.contains_key(unique) {
            continue;
        }
        let count = answers.iter().filter(|a| *a == unique).count();
        let mut sum = 0.0f64;
        for a in &answers {
            let matching = count - usize::from(a == unique);
            sum += f64::min(1.0, matching as f64 / 3.0);
        }
        scores.insert(unique.clone(), sum / answers.len() as f64);
    }
    Ok(scores)
}

/// VQA accuracy of one prediction: the score of its normalised form among [`answer_scores`], 0 if
/// no human gave it. Errors unless there are exactly 10 human answers.
pub fn vqa_accuracy(pred: &str, gt_answers: &[String]) -> Result<f64, String> {
    let scores = answer_scores(gt_answers)?;
    Ok(scores.get(&normalize(pred)).copied().unwrap_or(0.0))
}
