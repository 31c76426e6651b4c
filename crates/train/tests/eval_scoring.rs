//! The scorer every grid score depends on (`train::eval::Tally`): known answers to generated
//! questions, right ones counted right and wrong ones wrong, per family and group, with the counts
//! worked out here by hand.
use synth::{DatasetConfig, Family, Generator, Qa, Task};
use train::eval::Tally;

#[test]
fn right_answers_count_and_wrong_ones_do_not() {
    let soc = Generator::new(DatasetConfig { questions_per_family: 1, ..DatasetConfig::default() })
        .unwrap()
        .generate(0..10)
        .unwrap();
    let fine = Generator::new(DatasetConfig { task: Task::FineDetail, ..DatasetConfig::default() })
        .unwrap()
        .generate(0..4)
        .unwrap();
    let mut tally = Tally::default();
    // Sort-of-CLEVR: image i answers its questions right when i < 7 (7 of 10 per family); the
    // wrong answers are other valid answers ("yes" ↔ "no", another shape, another count).
    for (i, s) in soc.iter().enumerate() {
        for qa in &s.qas {
            let wrong = match qa.answer.as_str() {
                "yes" => "no".to_string(),
                "no" => "yes".to_string(),
                "rectangle" => "circle".to_string(),
                "circle" => "rectangle".to_string(),
                n => (n.parse::<u32>().unwrap() % 6 + 1).to_string(),
            };
            assert_ne!(wrong, qa.answer);
            tally.add(qa, if i < 7 { &qa.answer } else { &wrong });
        }
    }
    // Fine detail: surrounding whitespace is ignored; a digit string that differs anywhere is wrong.
    let ans: Vec<&Qa> = fine.iter().map(|s| &s.qas[0]).collect();
    tally.add(ans[0], &format!(" {}\n", ans[0].answer));
    tally.add(ans[1], &ans[1].answer[..ans[1].answer.len() - 1]);
    tally.add(ans[2], &format!("{}0", ans[2].answer));
    tally.add(ans[3], &ans[3].answer);
    let r = tally.report("stub", 1.0);
    for f in Family::SORT_OF_CLEVR {
        let s = r.families[f.name()];
        assert_eq!((s.correct, s.total), (7, 10), "{}", f.name());
    }
    assert_eq!((r.families["digits"].correct, r.families["digits"].total), (2, 4));
    assert_eq!((r.groups["non_relational"].correct, r.groups["non_relational"].total), (21, 30));
    assert_eq!((r.groups["relational"].correct, r.groups["relational"].total), (21, 30));
    assert_eq!((r.groups["fine_detail"].correct, r.groups["fine_detail"].total), (2, 4));
    assert_eq!((r.overall.correct, r.overall.total), (44, 64));
    assert!((r.overall.accuracy - 44.0 / 64.0).abs() < 1e-12);
}
