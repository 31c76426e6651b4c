//! AnswerWriter resume and torn-line repair; bad lines reported with file and line; empty files.
use eval::{mme, pope, read_answers, read_questions, read_scienceqa_items, textvqa, AnswerWriter, Error, QuestionId};
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::Path;

fn mask_ids(text: &str) -> String {
    text.lines()
        .map(|l| {
            let k = "\"answer_id\": \"";
            let s = l.find(k).unwrap() + k.len();
            format!("{}{}", &l[..s], &l[s + 22..])
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn questions(n: i64) -> Vec<(QuestionId, String, String)> {
    (1..=n)
        .map(|i| {
            (QuestionId::Int(i), format!("Is there object {i}?"), if i % 2 == 0 { "Yes".into() } else { "No".into() })
        })
        .collect()
}

/// Answers every question not yet answered, as a generation loop does on resume.
fn run(path: &Path, qs: &[(QuestionId, String, String)], stop_after: Option<usize>) {
    let (mut w, _) = AnswerWriter::open(path).unwrap();
    let mut done = 0;
    for (id, prompt, text) in qs {
        if w.is_answered(id, prompt) {
            continue;
        }
        if stop_after == Some(done) {
            return;
        }
        w.write(id, prompt, text, "m").unwrap();
        done += 1;
    }
}

#[test]
fn torn_last_line_is_cut_and_the_rerun_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let qs = questions(6);
    let full = dir.path().join("full.jsonl");
    run(&full, &qs, None);

    let cut = dir.path().join("sub/cut.jsonl");
    run(&cut, &qs, Some(3));
    // The process dies in the middle of writing the 4th line.
    let fragment = b"{\"question_id\": 4, \"prompt\": \"Is there obj";
    fs::OpenOptions::new().append(true).open(&cut).unwrap().write_all(fragment).unwrap();
    let (w, report) = AnswerWriter::open(&cut).unwrap();
    assert_eq!(report.kept, 3);
    assert_eq!(report.torn_bytes_dropped, fragment.len());
    assert!(!report.newline_added);
    assert!(report.bad_lines.is_empty());
    let ids: std::collections::HashSet<_> = (1..=3).map(QuestionId::Int).collect();
    assert_eq!(w.answered_ids(), &ids);
    assert_eq!(fs::read_to_string(&cut).unwrap().lines().count(), 3);
    drop(w);
    run(&cut, &qs, None);
    assert_eq!(mask_ids(&fs::read_to_string(&cut).unwrap()), mask_ids(&fs::read_to_string(&full).unwrap()));
}

#[test]
fn complete_last_line_without_newline_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.jsonl");
    let line = r#"{"question_id": "x", "prompt": "p", "text": "t", "answer_id": "a", "model_id": "m", "metadata": {}}"#;
    fs::write(&p, line).unwrap();
    let (mut w, report) = AnswerWriter::open(&p).unwrap();
    assert_eq!((report.kept, report.newline_added, report.torn_bytes_dropped), (1, true, 0));
    assert!(w.is_answered(&QuestionId::Str("x".into()), "p"));
    w.write(&QuestionId::Str("y".into()), "p", "t", "m").unwrap();
    let text = fs::read_to_string(&p).unwrap();
    assert!(text.starts_with(&format!("{line}\n{{")));
    assert_eq!(text.lines().count(), 2);
}

#[test]
fn bad_complete_lines_are_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.jsonl");
    let good = r#"{"question_id": 1, "prompt": "p", "text": "t", "answer_id": "a", "model_id": "m", "metadata": {}}"#;
    let content = format!("{good}\nnot json\n\n{{\"question_id\": 2}}\n");
    fs::write(&p, &content).unwrap();
    let (w, report) = AnswerWriter::open(&p).unwrap();
    assert_eq!(report.kept, 1);
    let lines: Vec<usize> = report.bad_lines.iter().map(|b| b.line).collect();
    assert_eq!(lines, [2, 4]);
    assert!(report.bad_lines[0].to_string().starts_with(&format!("{}:2: ", p.display())));
    assert!(report.bad_lines[1].message.contains("prompt"), "{}", report.bad_lines[1].message);
    assert_eq!(w.len(), 1);
    assert_eq!(fs::read_to_string(&p).unwrap(), content);
}

#[test]
fn mme_style_repeated_ids_are_answered_per_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mme.jsonl");
    let id = QuestionId::Str("count/0001.png".into());
    let (mut w, _) = AnswerWriter::open(&p).unwrap();
    w.write(&id, "Are there two cups?", "Yes", "m").unwrap();
    drop(w);
    let (w, _) = AnswerWriter::open(&p).unwrap();
    assert!(w.is_answered(&id, "Are there two cups?"));
    assert!(!w.is_answered(&id, "Are there three cups?"));
    assert!(w.answered_ids().contains(&id));
}

#[test]
fn empty_and_missing_answer_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.jsonl");
    fs::write(&p, "").unwrap();
    let (w, report) = AnswerWriter::open(&p).unwrap();
    assert_eq!((report.kept, w.len()), (0, 0));
    match read_answers(&p) {
        Err(Error::File { message, .. }) => assert!(message.contains("no answers"), "{message}"),
        other => panic!("{other:?}"),
    }
    // An empty question file is no questions (and no error); an empty ScienceQA file is not JSON.
    let q = read_questions(&p).unwrap();
    assert!(q.items.is_empty() && q.skipped.is_empty());
    match read_scienceqa_items(&p) {
        Err(Error::Line { line: 1, message, .. }) => assert!(message.contains("malformed JSON"), "{message}"),
        other => panic!("{other:?}"),
    }
    match read_answers(&dir.path().join("missing.jsonl")) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("missing.jsonl")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn question_reader_skips_and_counts_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("q.jsonl");
    fs::write(
        &p,
        concat!(
            "{\"question_id\": 1, \"image\": \"a.jpg\", \"text\": \"Q1\", \"category\": \"random\"}\n",
            "{\"question_id\": 2, \"image\": \"b.jpg\"\n",
            "\n",
            "{\"question_id\": [3], \"text\": \"Q3\"}\n",
            "{\"question_id\": \"4\", \"text\": \"Q4\"}\n",
            "[1, 2]\n",
        ),
    )
    .unwrap();
    let q = read_questions(&p).unwrap();
    assert_eq!(q.items.len(), 2);
    assert_eq!(q.items[1].question_id, QuestionId::Str("4".into()));
    assert_eq!(q.items[1].image, None);
    assert_eq!(q.skipped.iter().map(|s| s.line).collect::<Vec<_>>(), [2, 4, 6]);
    assert!(q.skipped[0].message.contains("malformed JSON"));

    let s = dir.path().join("sqa.json");
    fs::write(&s, r#"[{"id": "1", "conversations": [{"from": "human", "value": "Q?"}]}, {"id": "2"}, {"id": "3", "conversations": []}]"#).unwrap();
    let items = read_scienceqa_items(&s).unwrap();
    assert_eq!(items.items.len(), 1);
    assert_eq!(items.skipped.iter().map(|s| s.line).collect::<Vec<_>>(), [2, 3]);
}

#[test]
fn answers_reader_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.jsonl");
    let good = r#"{"question_id": 1, "prompt": "p", "text": "t", "answer_id": "a", "model_id": "m", "metadata": {}}"#;
    fs::write(&p, format!("{good}\n{good}\n{{\"question_id\": 1, \"prompt\": \"p\"}}\n")).unwrap();
    let e = read_answers(&p).unwrap_err();
    assert!(matches!(e, Error::Line { line: 3, .. }), "{e:?}");
    assert!(e.to_string().starts_with(&format!("{}:3: missing field `text`", p.display())), "{e}");
}

fn answers_file(dir: &Path, lines: &[(&str, &str, &str)]) -> std::path::PathBuf {
    let p = dir.join("answers.jsonl");
    let (mut w, _) = AnswerWriter::open(&p).unwrap();
    for (id, prompt, text) in lines {
        let id = id.parse::<i64>().map(QuestionId::Int).unwrap_or_else(|_| QuestionId::Str(id.to_string()));
        w.write(&id, prompt, text, "m").unwrap();
    }
    p
}

#[test]
fn scorers_name_the_answer_line_of_an_unknown_question() {
    let dir = tempfile::tempdir().unwrap();
    // POPE: question id 99 is not in the question file.
    let p = answers_file(dir.path(), &[("1", "Is there a dog?", "Yes"), ("99", "Is there a cat?", "No")]);
    let q = eval::Question::from_json(
        serde_json::json!({"question_id": 1, "text": "Is there a dog?", "category": "random"}),
    )
    .unwrap();
    let questions: HashMap<_, _> = [(q.question_id.clone(), q)].into_iter().collect();
    let e = pope::score(&read_answers(&p).unwrap(), &p, &questions, &[]).unwrap_err();
    assert!(matches!(e, Error::Line { line: 2, .. }), "{e}");
    assert!(e.to_string().contains("question_id 99"), "{e}");
    fs::remove_file(&p).unwrap();

    // TextVQA: no annotation for the (image id, question) pair.
    let p =
        answers_file(dir.path(), &[("img1", "What is it?\nAnswer the question using a single word or phrase.", "x")]);
    let e = textvqa::score(&read_answers(&p).unwrap(), &p, &textvqa::Annotations::new()).unwrap_err();
    assert!(matches!(e, Error::Line { line: 1, .. }), "{e}");
    fs::remove_file(&p).unwrap();

    // MME: unknown task / question.
    let p = answers_file(dir.path(), &[("count/1.png", "Is there a cup?", "Yes")]);
    let e = mme::score(&read_answers(&p).unwrap(), &p, &mme::GroundTruth::new()).unwrap_err();
    assert!(matches!(e, Error::Line { line: 1, .. }), "{e}");
}

#[test]
fn mme_odd_answer_count_is_an_error_and_missing_tasks_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let key = |q: &str| ("count".to_string(), "1.txt".to_string(), format!("{q} Please answer yes or no."));
    let gt: mme::GroundTruth =
        [(key("Two cups?"), "Yes".to_string()), (key("Three cups?"), "No".to_string())].into_iter().collect();
    let p = answers_file(dir.path(), &[("count/1.png", "Two cups?", "Yes")]);
    let e = mme::score(&read_answers(&p).unwrap(), &p, &gt).unwrap_err();
    assert!(e.to_string().contains("odd number"), "{e}");
    fs::remove_file(&p).unwrap();
    let p = answers_file(dir.path(), &[("count/1.png", "Two cups?", "Yes"), ("count/1.png", "Three cups?", "Yes")]);
    let r = mme::score(&read_answers(&p).unwrap(), &p, &gt).unwrap();
    assert_eq!(r.tasks.len(), 1);
    assert_eq!((r.tasks[0].acc, r.tasks[0].acc_plus, r.tasks[0].score), (0.5, 0.0, 50.0));
    assert_eq!(r.missing_tasks.len(), 13);
    assert_eq!((r.perception, r.cognition), (None, None));
}

#[test]
fn keyed_answer_ids_depend_only_on_seed_and_question() {
    let dir = tempfile::tempdir().unwrap();
    let qs = [(QuestionId::Int(1), "a"), (QuestionId::Str("1".into()), "a"), (QuestionId::Int(2), "b")];
    let ids = |name: &str, order: &[usize], seed: u64| {
        let (w, _) = AnswerWriter::open(&dir.path().join(name)).unwrap();
        let mut w = w.with_keyed_ids(seed);
        let mut out = vec![String::new(); qs.len()];
        for &i in order {
            out[i] = w.write(&qs[i].0, qs[i].1, "yes", "m").unwrap();
        }
        out
    };
    let a = ids("a.jsonl", &[0, 1, 2], 7);
    assert_eq!(a, ids("b.jsonl", &[2, 0, 1], 7), "same ids whatever the order");
    assert_ne!(a, ids("c.jsonl", &[0, 1, 2], 8), "another seed, other ids");
    assert_ne!(a[0], a[1], "1 and \"1\" are different questions");
    assert!(a.iter().all(|id| id.len() == 22 && id.bytes().all(|b| eval::formats::SHORTUUID_ALPHABET.contains(&b))));
}

#[test]
fn a_second_writer_on_the_same_file_is_refused_until_the_first_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let (mut first, _) = AnswerWriter::open(&path).unwrap();
    first.write(&QuestionId::Int(1), "q", "yes", "m").unwrap();
    let err = AnswerWriter::open(&path).err().expect("locked");
    assert!(err.to_string().contains("is being written by another process"), "{err}");
    drop(first);
    let (second, report) = AnswerWriter::open(&path).unwrap();
    assert_eq!(report.kept, 1);
    assert!(second.is_answered(&QuestionId::Int(1), "q"));
}
