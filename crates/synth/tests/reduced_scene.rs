//! A scene reduced to some of its objects (the text-pretraining curriculum over the number of
//! objects): captions, answers and questions among the present objects. Expected values are worked
//! out by hand from the coordinates below.
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use synth::questions::{answer, answer_among, ask, ask_among};
use synth::{Colour, Family, Object, Scene, SceneConfig, Shape};

/// red (10, 10) square, green (70, 10) circle, blue (20, 20) circle, orange (70, 70) square,
/// grey (40, 60) square, yellow (15, 70) circle; 80-px image.
fn scene() -> Scene {
    let at = |colour, shape, x, y| Object { colour, shape, x, y };
    Scene {
        config: SceneConfig::default(),
        objects: [
            at(Colour::Red, Shape::Square, 10, 10),
            at(Colour::Green, Shape::Circle, 70, 10),
            at(Colour::Blue, Shape::Circle, 20, 20),
            at(Colour::Orange, Shape::Square, 70, 70),
            at(Colour::Grey, Shape::Square, 40, 60),
            at(Colour::Yellow, Shape::Circle, 15, 70),
        ],
    }
}

fn ans(r: Option<(String, bool)>) -> Option<String> {
    r.map(|(a, _)| a)
}

#[test]
fn relational_answers_consider_only_the_present_objects() {
    let s = scene();
    // All six: blue (distance² 200) is closest to red, orange (distance² 7200) furthest; 3 squares.
    assert_eq!(ans(answer(&s, Family::Closest, Colour::Red)).as_deref(), Some("circle"));
    assert_eq!(ans(answer(&s, Family::Furthest, Colour::Red)).as_deref(), Some("rectangle"));
    assert_eq!(ans(answer(&s, Family::Count, Colour::Red)).as_deref(), Some("3"));
    // Among red, green, yellow: green (3600) is closer than yellow (3625), yellow furthest;
    // red is the only square.
    let present = [Colour::Red, Colour::Green, Colour::Yellow];
    assert_eq!(ans(answer_among(&s, Family::Closest, Colour::Red, &present)).as_deref(), Some("circle"));
    assert_eq!(ans(answer_among(&s, Family::Furthest, Colour::Red, &present)).as_deref(), Some("circle"));
    assert_eq!(ans(answer_among(&s, Family::Count, Colour::Red, &present)).as_deref(), Some("1"));
    assert_eq!(ans(answer_among(&s, Family::Count, Colour::Green, &present)).as_deref(), Some("2"));
    // Among red and grey: grey is both closest and furthest.
    let two = [Colour::Red, Colour::Grey];
    assert_eq!(ans(answer_among(&s, Family::Closest, Colour::Red, &two)).as_deref(), Some("rectangle"));
    assert_eq!(ans(answer_among(&s, Family::Furthest, Colour::Red, &two)).as_deref(), Some("rectangle"));
    // Non-relational answers do not depend on the others; an absent colour or a lone object has none.
    assert_eq!(ans(answer_among(&s, Family::Left, Colour::Red, &two)).as_deref(), Some("yes"));
    assert_eq!(ans(answer_among(&s, Family::Top, Colour::Grey, &two)).as_deref(), Some("no"));
    assert_eq!(answer_among(&s, Family::Shape, Colour::Blue, &two), None);
    assert_eq!(answer_among(&s, Family::Closest, Colour::Red, &[Colour::Red]), None);
    assert_eq!(ans(answer_among(&s, Family::Count, Colour::Red, &[Colour::Red])).as_deref(), Some("1"));
}

#[test]
fn the_caption_lists_the_present_objects_in_colour_order() {
    let s = scene();
    assert_eq!(
        s.caption_of(8, &[Colour::Yellow, Colour::Red]),
        "red rectangle at row 1 column 1, yellow circle at row 7 column 1."
    );
    assert_eq!(s.caption_of(8, &Colour::ALL), s.caption(8));
    assert_eq!(s.caption_of(8, &[]), ".");
}

#[test]
fn questions_are_asked_about_present_colours_only() {
    let s = scene();
    let present = [Colour::Blue];
    let qas = ask_among(&s, 2, &present, &mut ChaCha8Rng::seed_from_u64(3));
    // One object: no closest/furthest; shape, left, top, count twice each, all about blue.
    assert_eq!(qas.len(), 8);
    assert!(qas.iter().all(|q| q.question.contains("blue")), "{qas:?}");
    assert!(qas.iter().all(|q| !matches!(q.family, Family::Closest | Family::Furthest)));
    // With every colour present it is `ask`, draw for draw.
    let all = ask_among(&s, 3, &Colour::ALL, &mut ChaCha8Rng::seed_from_u64(7));
    assert_eq!(all, ask(&s, 3, &mut ChaCha8Rng::seed_from_u64(7)));
}
