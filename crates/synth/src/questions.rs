//! Sort-of-CLEVR question families, their natural-language templates and answers.
//!
//! Source: Santoro et al. 2017, §4 (Sort-of-CLEVR): non-relational questions (shape of the ⟨colour⟩
//! object; is it on the left; is it on the top) and relational ones (shape of the object closest to
//! / furthest from it; how many objects have its shape). Answer rules follow the canonical generator
//! (kimhc6028/relational-networks `sort_of_clevr_generator.py`): left ⇔ `x < image_size / 2`,
//! top ⇔ `y < image_size / 2`, closest excludes the object itself, the count includes it.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::scene::{Colour, Scene};
use crate::{Error, Result};

/// A question family; every sample carries one so accuracy can be reported per family.
/// Serialised in JSONL as the lowercase name (`"shape"`, …, `"digits"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Non-relational: "What is the shape of the red object?" → rectangle | circle.
    Shape,
    /// Non-relational: "Is the red object on the left side of the image?" → yes | no.
    Left,
    /// Non-relational: "Is the red object on the top side of the image?" → yes | no.
    Top,
    /// Relational: "What is the shape of the object closest to the red object?" → rectangle | circle.
    Closest,
    /// Relational: "What is the shape of the object furthest from the red object?" → rectangle | circle.
    Furthest,
    /// Relational: "How many objects have the same shape as the red object?" → 1 … 6.
    Count,
    /// Fine detail: "What number is written in the image?" → the digits.
    Digits,
    /// Knowledge: "What is number ⟨k⟩ of the object?" → a digit, a fact about the shown object's type
    /// ([`crate::facts`]).
    Fact,
    /// Naming the lone object of an `object_facts` image: "What is the object?" → "red circle"
    /// (colour and shape as the other families write them). The fact family's counterpart that asks
    /// what the image shows, for aligning visual tokens on the object before its facts are asked
    /// (`DatasetConfig::name_questions`).
    Name,
}

/// The coarse group of a family, as reported in the Sort-of-CLEVR paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// shape, left, top (and name).
    NonRelational,
    /// closest, furthest, count.
    Relational,
    /// digits.
    FineDetail,
    /// fact.
    Knowledge,
}

impl Family {
    /// The Sort-of-CLEVR families, non-relational first.
    pub const SORT_OF_CLEVR: [Family; 6] =
        [Family::Shape, Family::Left, Family::Top, Family::Closest, Family::Furthest, Family::Count];
    /// Every family.
    pub const ALL: [Family; 9] = [
        Family::Shape,
        Family::Left,
        Family::Top,
        Family::Closest,
        Family::Furthest,
        Family::Count,
        Family::Digits,
        Family::Fact,
        Family::Name,
    ];

    /// The JSONL name.
    pub fn name(self) -> &'static str {
        match self {
            Family::Shape => "shape",
            Family::Left => "left",
            Family::Top => "top",
            Family::Closest => "closest",
            Family::Furthest => "furthest",
            Family::Count => "count",
            Family::Digits => "digits",
            Family::Fact => "fact",
            Family::Name => "name",
        }
    }

    /// Parses a JSONL name; `None` if unknown.
    pub fn from_name(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Non-relational, relational or fine-detail.
    pub fn group(self) -> Group {
        match self {
            Family::Shape | Family::Left | Family::Top | Family::Name => Group::NonRelational,
            Family::Closest | Family::Furthest | Family::Count => Group::Relational,
            Family::Digits => Group::FineDetail,
            Family::Fact => Group::Knowledge,
        }
    }

    /// The question text for a Sort-of-CLEVR family about the object of `colour`
    /// (for [`Family::Digits`] the colour is ignored; for [`Family::Fact`] it is property 0's
    /// question, [`crate::facts::question`]).
    pub fn question(self, colour: Colour) -> String {
        let c = colour.name();
        match self {
            Family::Shape => format!("What is the shape of the {c} object?"),
            Family::Left => format!("Is the {c} object on the left side of the image?"),
            Family::Top => format!("Is the {c} object on the top side of the image?"),
            Family::Closest => format!("What is the shape of the object closest to the {c} object?"),
            Family::Furthest => format!("What is the shape of the object furthest from the {c} object?"),
            Family::Count => format!("How many objects have the same shape as the {c} object?"),
            Family::Digits => DIGITS_QUESTION.to_string(),
            Family::Fact => crate::facts::question(0),
            Family::Name => NAME_QUESTION.to_string(),
        }
    }
}

impl Family {
    /// The keyword of the family's short question form ([`short_question`]): the family's name, but
    /// "many" for [`Family::Count`] and "number" for [`Family::Digits`] — words of the natural
    /// questions, so the generated tokenizer covers them.
    pub fn keyword(self) -> &'static str {
        match self {
            Family::Count => "many",
            Family::Digits | Family::Fact => "number",
            Family::Name => "object",
            f => f.name(),
        }
    }
}

/// The short form of a question, for the staged training curriculum (`train` crate,
/// `VlmTrainConfig::short_question_steps`): "⟨keyword⟩ ⟨colour⟩", e.g. "shape red" for "What is the
/// shape of the red object?", "many red" for a count question; "number" for [`Family::Digits`]
/// (which names no colour). The form ends on the colour word, so the answer is predicted right
/// after it — a one-hop lookup from the colour to the visual token of that colour, which a small
/// LLM trained from scratch learns quickly, where the natural question (the answer several tokens
/// after the colour word) stays at the answer prior for thousands of steps (docs/training-notes.md).
/// The colour is the one colour name that occurs as a word in `question`, so the form
/// also works for questions read from JSONL. The generated tokenizer's words carry their leading
/// space, so the trainer tokenizes `" " + form` (two tokens). Errors: [`Error::Config`] (`question`) if a
/// Sort-of-CLEVR question names no colour or more than one.
pub fn short_question(question: &str, family: Family) -> Result<String> {
    if family == Family::Digits || family == Family::Name {
        return Ok(family.keyword().to_string());
    }
    if family == Family::Fact {
        // "number ⟨k⟩": the property number is the key, the answer follows it.
        let k: String = question.chars().filter(char::is_ascii_digit).collect();
        return Ok(format!("{} {}", family.keyword(), k));
    }
    let words: Vec<String> =
        question.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
    let named: Vec<Colour> = Colour::ALL.into_iter().filter(|c| words.iter().any(|w| w == c.name())).collect();
    match named.as_slice() {
        [c] => Ok(format!("{} {}", family.keyword(), c.name())),
        _ => Err(Error::config(
            "question",
            format!(
                "{question:?} ({} question) must name exactly one colour for its short form, names {}",
                family.name(),
                named.len()
            ),
        )),
    }
}

/// The fine-detail task's question.
pub const DIGITS_QUESTION: &str = "What number is written in the image?";

/// The [`Family::Name`] question; its answer is the object's colour and shape, "red circle".
pub const NAME_QUESTION: &str = "What is the object?";

/// The [`Family::Name`] question about the object of colour `named` among several ("What is the red
/// object?"), or [`NAME_QUESTION`] about a lone object (`None`).
pub fn name_question(named: Option<crate::Colour>) -> String {
    match named {
        Some(c) => format!("What is the {} object?", c.name()),
        None => NAME_QUESTION.to_string(),
    }
}

/// Every answer word a Sort-of-CLEVR question can have.
pub const SORT_OF_CLEVR_ANSWERS: [&str; 10] = ["yes", "no", "rectangle", "circle", "1", "2", "3", "4", "5", "6"];

/// One question about an image with its single-word answer and family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Qa {
    /// Question text (without the `<image>\n` prefix).
    pub question: String,
    /// Single-word answer (yes, no, rectangle, circle, 1–6, or a digit string).
    pub answer: String,
    /// The family, for per-family accuracy.
    pub family: Family,
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn squared_distance(scene: &Scene, a: usize, b: usize) -> i64 {
    let (p, q) = (&scene.objects[a], &scene.objects[b]);
    let (dx, dy) = (p.x as i64 - q.x as i64, p.y as i64 - q.y as i64);
    dx * dx + dy * dy
}

/// The index of the object closest to (`furthest = false`) or furthest from object `i` among the
/// objects of the colours in `present`, excluding `i` itself, and whether the answer is ambiguous
/// (another object at the same distance has a different shape). Ties are broken by colour order, as
/// in the canonical generator. `None` when no other object is present.
fn extreme(scene: &Scene, i: usize, furthest: bool, present: &[Colour]) -> Option<(usize, bool)> {
    let others = (0..6).filter(|&j| j != i && present.contains(&Colour::ALL[j]));
    let key = |j: usize| {
        let d = squared_distance(scene, i, j);
        if furthest {
            -d
        } else {
            d
        }
    };
    let best = others.clone().min_by_key(|&j| (key(j), j))?;
    let ambiguous =
        others.filter(|&j| key(j) == key(best)).any(|j| scene.objects[j].shape != scene.objects[best].shape);
    Some((best, ambiguous))
}

/// The answer to a Sort-of-CLEVR family about `colour`, and whether it is ambiguous (only
/// closest/furthest can be, on exact distance ties between shapes). `None` for [`Family::Digits`].
pub fn answer(scene: &Scene, family: Family, colour: Colour) -> Option<(String, bool)> {
    answer_among(scene, family, colour, &Colour::ALL)
}

/// [`answer`] for the scene reduced to the objects whose colours `present` lists (as
/// [`Scene::caption_of`] describes it): closest/furthest and count consider only those objects.
/// `None` for [`Family::Digits`], for a `colour` not in `present`, and for closest/furthest when no
/// other object is present.
pub fn answer_among(scene: &Scene, family: Family, colour: Colour, present: &[Colour]) -> Option<(String, bool)> {
    if !present.contains(&colour) {
        return None;
    }
    let i = colour as usize;
    let o = &scene.objects[i];
    let size = scene.config.image_size;
    Some(match family {
        Family::Shape => (o.shape.answer().to_string(), false),
        Family::Left => (yes_no(2 * o.x < size), false),
        Family::Top => (yes_no(2 * o.y < size), false),
        Family::Closest | Family::Furthest => {
            let (j, ambiguous) = extreme(scene, i, family == Family::Furthest, present)?;
            (scene.objects[j].shape.answer().to_string(), ambiguous)
        }
        Family::Count => {
            let n = scene.objects.iter().filter(|p| present.contains(&p.colour) && p.shape == o.shape).count();
            (n.to_string(), false)
        }
        Family::Digits | Family::Fact | Family::Name => return None,
    })
}

/// Asks `per_family` questions of each Sort-of-CLEVR family about `scene`, in family order, each
/// about a uniformly drawn colour. A colour whose closest/furthest answer would be ambiguous (exact
/// distance tie between a square and a circle) is re-drawn; if all six are ambiguous the canonical
/// colour-order tie-break is kept.
pub fn ask<R: Rng>(scene: &Scene, per_family: usize, rng: &mut R) -> Vec<Qa> {
    ask_among(scene, per_family, &Colour::ALL, rng)
}

/// [`ask`] about the scene reduced to the objects whose colours `present` lists ([`answer_among`]):
/// colours are drawn from `present`; a family with no answer (closest/furthest with one object) is
/// skipped. With `present` = [`Colour::ALL`] this is [`ask`], draw for draw.
pub fn ask_among<R: Rng>(scene: &Scene, per_family: usize, present: &[Colour], rng: &mut R) -> Vec<Qa> {
    let mut qas = Vec::with_capacity(6 * per_family);
    if present.is_empty() {
        return qas;
    }
    for family in Family::SORT_OF_CLEVR {
        for _ in 0..per_family {
            let mut colour = present[rng.random_range(0..present.len())];
            let mut result = answer_among(scene, family, colour, present);
            if matches!(result, Some((_, true))) {
                let clear: Vec<Colour> = present
                    .iter()
                    .copied()
                    .filter(|&c| matches!(answer_among(scene, family, c, present), Some((_, false))))
                    .collect();
                if !clear.is_empty() {
                    colour = clear[rng.random_range(0..clear.len())];
                    result = answer_among(scene, family, colour, present);
                }
            }
            if let Some((answer, _)) = result {
                qas.push(Qa { question: family.question(colour), answer, family });
            }
        }
    }
    qas
}
