//! Scorer parity: our scorers on the committed fixtures give the numbers the reference Python scorers
//! printed on the same files (`tests/fixtures/make_fixtures.py`, outputs in `*/expected.json`).
use eval::{gqa, mme, pope, read_answers, read_questions, scienceqa, textvqa};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fx(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(p)
}

fn expected(p: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fx(p)).unwrap()).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}

fn u(v: &Value) -> usize {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a count")) as usize
}

#[test]
fn pope_matches_eval_pope() {
    let path = fx("pope/answers.jsonl");
    let answers = read_answers(&path).unwrap();
    let qs = read_questions(&fx("pope/questions.jsonl")).unwrap();
    assert!(qs.skipped.is_empty());
    let questions: HashMap<_, _> = qs.items.into_iter().map(|q| (q.question_id.clone(), q)).collect();
    let labels = pope::read_annotations(&fx("pope/coco")).unwrap();
    let r = pope::score(&answers, &path, &questions, &labels).unwrap();
    let exp = expected("pope/expected.json");
    let exp = exp["categories"].as_object().unwrap();
    assert_eq!(r.categories.len(), exp.len());
    for c in &r.categories {
        let e = &exp[&c.category];
        assert_eq!(c.samples, u(&e["samples"]), "{}", c.category);
        assert_eq!((c.tp, c.fp, c.tn, c.fn_), (u(&e["tp"]), u(&e["fp"]), u(&e["tn"]), u(&e["fn"])), "{}", c.category);
        assert_eq!(c.accuracy, Some(f(&e["accuracy"])), "{}", c.category);
        assert_eq!(c.precision, Some(f(&e["precision"])), "{}", c.category);
        assert_eq!(c.recall, Some(f(&e["recall"])), "{}", c.category);
        assert_eq!(c.f1, Some(f(&e["f1"])), "{}", c.category);
        assert_eq!(c.yes_ratio, Some(f(&e["yes_ratio"])), "{}", c.category);
    }
}

#[test]
fn gqa_matches_convert_and_eval_py() {
    let path = fx("gqa/answers.jsonl");
    let answers = read_answers(&path).unwrap();
    let questions = gqa::read_questions(&fx("gqa/testdev_balanced_questions.json")).unwrap();
    let r = gqa::score(&answers, &path, &questions).unwrap();
    let e = expected("gqa/expected.json");
    assert_eq!(r.accuracy, f(&e["accuracy"]));
    assert_eq!(r.binary.accuracy, f(&e["binary"]));
    assert_eq!(r.open.accuracy, f(&e["open"]));
    for (ours, key) in [(&r.per_structural_type, "per_structural_type"), (&r.per_semantic_type, "per_semantic_type")] {
        let exp = e[key].as_object().unwrap();
        assert_eq!(ours.len(), exp.len(), "{key}");
        for (k, g) in ours {
            assert_eq!((g.accuracy, g.count), (f(&exp[k][0]), u(&exp[k][1])), "{key} {k}");
        }
    }
    // The answer for an id absent from the questions, and the integer id, are ignored.
    assert_eq!(r.answers_not_in_questions, 2);
}

#[test]
fn scienceqa_matches_eval_science_qa() {
    let answers = read_answers(&fx("scienceqa/answers.jsonl")).unwrap();
    let problems = scienceqa::read_problems(&fx("scienceqa"), "test").unwrap();
    let r = scienceqa::score(&answers, &problems);
    let e = expected("scienceqa/expected.json");
    assert_eq!(r.accuracy, f(&e["accuracy"]));
    assert_eq!((r.correct, r.count), (u(&e["correct"]), u(&e["count"])));
    assert_eq!((r.img_correct, r.img_count), (u(&e["img_correct"]), u(&e["img_count"])));
    assert_eq!(format!("{:.2}", r.img_accuracy.unwrap()), e["img_accuracy_printed"].as_str().unwrap());
    let exp = e["problems"].as_object().unwrap();
    assert_eq!(r.problems.len(), exp.len());
    for p in &r.problems {
        let x = &exp[&p.question_id];
        assert_eq!(p.parsed, x["parsed"].as_str().unwrap(), "problem {}", p.question_id);
        assert_eq!(p.pred_idx, x["pred_idx"].as_i64().unwrap(), "problem {}", p.question_id);
        assert_eq!(p.ground_truth, x["ground_truth"].as_str().unwrap(), "problem {}", p.question_id);
        assert_eq!(p.correct, x["correct"].as_bool().unwrap(), "problem {}", p.question_id);
        assert_eq!(p.multimodal, x["multimodal"].as_bool().unwrap(), "problem {}", p.question_id);
    }
}

#[test]
fn textvqa_matches_m4c_evaluator() {
    let path = fx("textvqa/answers.jsonl");
    let answers = read_answers(&path).unwrap();
    let ann = textvqa::read_annotations(&fx("textvqa/TextVQA_0.5.1_val.json")).unwrap();
    let r = textvqa::score(&answers, &path, &ann).unwrap();
    let e = expected("textvqa/expected.json");
    let exp = e["answers"].as_array().unwrap();
    assert_eq!(r.answers.len(), exp.len());
    for (a, x) in r.answers.iter().zip(exp) {
        assert_eq!(a.normalized, x["normalized"].as_str().unwrap(), "line {}", a.line);
        assert_eq!(a.score, f(&x["score"]), "line {}", a.line);
    }
    assert_eq!(r.accuracy, f(&e["accuracy"]));
}

#[test]
fn mme_matches_convert_and_calculation() {
    let path = fx("mme/answers.jsonl");
    let answers = read_answers(&path).unwrap();
    let gt = mme::read_ground_truth(&fx("mme/MME_Benchmark_release_version")).unwrap();
    let r = mme::score(&answers, &path, &gt).unwrap();
    let e = expected("mme/expected.json");
    assert!(r.missing_tasks.is_empty());
    assert_eq!(r.perception, Some(f(&e["perception"])));
    assert_eq!(r.cognition, Some(f(&e["cognition"])));
    let exp = e["tasks"].as_object().unwrap();
    assert_eq!(r.tasks.len(), exp.len());
    for t in &r.tasks {
        let x = &exp[&t.task];
        assert_eq!(t.acc, f(&x["acc"]), "{}", t.task);
        assert_eq!(t.acc_plus, f(&x["acc_plus"]), "{}", t.task);
        assert_eq!(t.score, f(&x["score"]), "{}", t.task);
        assert_eq!(t.other, u(&x["other"]), "{}", t.task);
    }
}
