//! The generated world's knowledge: facts about its object types that no image shows, only text
//! teaches — the analogue of the world knowledge a pretrained LLM brings to the paper's visual
//! reasoning benchmarks (arXiv 2411.03312 §3: ScienceQA, MMBench and the like ask about what an image
//! shows *and* what is known about it; the larger LLM knows more).
//!
//! Each object type (colour × shape, 12 types) has [`FACT_PROPERTIES`] numbered properties whose
//! values are digits 0–9, drawn once from the fixed [`WORLD_SEED`] (a SplitMix64 hash of the type
//! and the property number, so any fact is computed alone and no generator's random stream moves).
//! The `object_facts` task ([`crate::Task::ObjectFacts`]) shows one object and asks
//! "What is number ⟨k⟩ of the object?"; the answer needs the object's type from the image (coarse
//! visual information: a single pooled token can carry it) and the fact from the LLM's memory.
//! The text corpus of `vlmscale train llm` writes the same questions after the object's caption.

use crate::scene::{Colour, Shape};

/// Properties per object type; 12 types × 200 = 2400 facts. Chosen so that, after the text
/// pretraining of `vlmscale train llm`, the size presets remember different shares of them
/// (docs/training-notes.md).
pub const FACT_PROPERTIES: u32 = 200;

/// The seed the world's facts are drawn from. Part of the world's definition, like the font: changing
/// it changes every fact.
pub const WORLD_SEED: u64 = 0x5eed_fac7_0b1e_c75a;

/// SplitMix64's output function (Steele, Lea, Flood 2014; the `splitmix64.c` reference finaliser).
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The value (0–9) of property `k` of the object type (`colour`, `shape`). Defined for every `k`;
/// questions ask `k < FACT_PROPERTIES`.
pub fn value(colour: Colour, shape: Shape, k: u32) -> u8 {
    let kind = colour as u64 * 2 + matches!(shape, Shape::Circle) as u64;
    (splitmix64(WORLD_SEED ^ (kind << 40) ^ k as u64) % 10) as u8
}

/// "What is number ⟨k⟩ of the object?" (the number written in digits, which the generated tokenizer
/// splits one per token).
pub fn question(k: u32) -> String {
    question_of(k, None)
}

/// "What is number ⟨k⟩ of the red object?" about the object of colour `named` among several, or
/// [`question`] about a lone object (`None`).
pub fn question_of(k: u32, named: Option<Colour>) -> String {
    match named {
        Some(c) => format!("What is number {k} of the {} object?", c.name()),
        None => format!("What is number {k} of the object?"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // splitmix64.c with state 1234567: the state advances by the golden gamma before each
        // output; the first outputs are the published test vector of that seed.
        let mut state: u64 = 1234567;
        let mut next = || {
            let out = splitmix64(state);
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            out
        };
        assert_eq!(next(), 6457827717110365317);
        assert_eq!(next(), 3203168211198807973);
        assert_eq!(next(), 9817491932198370423);
    }

    #[test]
    fn values_are_digits_spread_over_all_ten() {
        let mut counts = [0usize; 10];
        for c in Colour::ALL {
            for s in [Shape::Square, Shape::Circle] {
                for k in 0..FACT_PROPERTIES {
                    counts[value(c, s, k) as usize] += 1;
                }
            }
        }
        let n = 12 * FACT_PROPERTIES as usize;
        // Uniform on 10 values: each count is n/10 ± a few standard deviations (sd ≈ 14.7 at n = 2400).
        for (d, &k) in counts.iter().enumerate() {
            assert!((k as f64 - n as f64 / 10.0).abs() < 5.0 * (n as f64 * 0.09).sqrt(), "digit {d}: {k} of {n}");
        }
        // Circle and square of one colour disagree on most properties (independent draws).
        let same = (0..FACT_PROPERTIES)
            .filter(|&k| value(Colour::Red, Shape::Square, k) == value(Colour::Red, Shape::Circle, k))
            .count();
        assert!(same < FACT_PROPERTIES as usize / 5, "{same}");
    }
}
