//! The short question form of the staged curriculum: keyword + colour for every family and colour,
//! covered by the generated tokenizer without `<unk>` (with a leading space), and errors for questions naming no colour or
//! several.

use synth::tokenizer::{build_tokenizer, UNK};
use synth::{short_question, Colour, DatasetConfig, Family, Generator, Task};

/// The expected keyword per family, written out here (not taken from `Family::keyword`).
fn expected_keyword(f: Family) -> &'static str {
    match f {
        Family::Shape => "shape",
        Family::Left => "left",
        Family::Top => "top",
        Family::Closest => "closest",
        Family::Furthest => "furthest",
        Family::Count => "many",
        Family::Digits | Family::Fact => "number",
        Family::Name => "object",
    }
}

#[test]
fn short_form_is_keyword_then_the_questions_colour() {
    let colours = [
        (Colour::Red, "red"),
        (Colour::Green, "green"),
        (Colour::Blue, "blue"),
        (Colour::Orange, "orange"),
        (Colour::Grey, "grey"),
        (Colour::Yellow, "yellow"),
    ];
    for f in Family::SORT_OF_CLEVR {
        for (c, word) in colours {
            let q = f.question(c);
            assert_eq!(short_question(&q, f).unwrap(), format!("{} {word}", expected_keyword(f)), "{q}");
        }
    }
    assert_eq!(short_question("What number is written in the image?", Family::Digits).unwrap(), "number");
    assert_eq!(short_question("What is number 147 of the object?", Family::Fact).unwrap(), "number 147");
    assert_eq!(short_question("What is the object?", Family::Name).unwrap(), "object");
    // Works on other wordings too: the colour is found as a word, case-insensitively.
    assert_eq!(short_question("Shape of the BLUE thing, please.", Family::Shape).unwrap(), "shape blue");
}

#[test]
fn short_form_needs_exactly_one_colour_word() {
    for q in
        ["What is the shape of the object?", "Is the red or blue object on the left?", "Is the reddish object on top?"]
    {
        let err = short_question(q, Family::Left).unwrap_err();
        assert!(err.to_string().contains("exactly one colour"), "{q}: {err}");
    }
}

#[test]
fn generated_tokenizer_covers_every_short_form() {
    let tok = build_tokenizer(&[]).unwrap();
    let unk = tok.token_to_id(UNK).unwrap();
    let samples =
        Generator::new(DatasetConfig { task: Task::SortOfClevr, questions_per_family: 2, ..DatasetConfig::default() })
            .unwrap()
            .generate(0..20)
            .unwrap();
    let mut n = 0;
    for s in &samples {
        for qa in &s.qas {
            let short = short_question(&qa.question, qa.family).unwrap();
            // As the trainer places it: right after the visual tokens, with a leading space (the
            // vocabulary's words carry their leading space, `" shape"`).
            let text = format!(" {short}");
            let ids = tok.encode(text.as_str(), false).unwrap().get_ids().to_vec();
            assert_eq!(ids.len(), 2, "{text:?} → {ids:?}");
            assert!(!ids.contains(&unk), "{text:?} → {ids:?}");
            assert_eq!(tok.decode(&ids, false).unwrap(), text);
            n += 1;
        }
    }
    assert_eq!(n, 20 * 6 * 2);
}
