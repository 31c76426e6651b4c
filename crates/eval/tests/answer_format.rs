//! Format parity: every committed answers file was written by the fixture script exactly as LLaVA's
//! `model_vqa_loader.py` writes answers (`json.dumps(...) + "\n"`) and was accepted by the reference
//! scorers. AnswerWriter, given the same fields, must write the same bytes (answer ids are random
//! in both, so they are compared by form only). Question files in LLaVA's formats load.
use eval::formats::SHORTUUID_ALPHABET;
use eval::{read_questions, read_scienceqa_items, AnswerWriter, QuestionId};
use std::path::{Path, PathBuf};

fn fx(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(p)
}

/// The line with its answer id replaced by a placeholder, after checking the id's form.
fn mask_answer_id(line: &str) -> String {
    let key = "\"answer_id\": \"";
    let start = line.find(key).expect("answer_id field") + key.len();
    let id = &line[start..start + 22];
    assert!(id.bytes().all(|b| SHORTUUID_ALPHABET.contains(&b)), "answer id {id} is not shortuuid-style");
    assert_eq!(&line[start + 22..start + 23], "\"");
    format!("{}<ID>{}", &line[..start], &line[start + 22..])
}

#[test]
fn answer_writer_writes_model_vqa_loader_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["format", "pope", "gqa", "scienceqa", "textvqa", "mme"] {
        let reference = std::fs::read_to_string(fx(&format!("{name}/answers.jsonl"))).unwrap();
        let out = dir.path().join(format!("{name}.jsonl"));
        let (mut w, report) = AnswerWriter::open(&out).unwrap();
        assert_eq!(report.kept, 0);
        for line in reference.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let qid = QuestionId::from_value(&v["question_id"]).unwrap();
            w.write(&qid, v["prompt"].as_str().unwrap(), v["text"].as_str().unwrap(), v["model_id"].as_str().unwrap())
                .unwrap();
        }
        drop(w);
        let ours = std::fs::read_to_string(&out).unwrap();
        assert!(ours.ends_with('\n'));
        let a: Vec<String> = ours.lines().map(mask_answer_id).collect();
        let b: Vec<String> = reference.lines().map(mask_answer_id).collect();
        assert_eq!(a.len(), b.len(), "{name}");
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(x, y, "{name}/answers.jsonl line {}", i + 1);
        }
    }
}

#[test]
fn llava_question_files_load() {
    let q = read_questions(&fx("pope/questions.jsonl")).unwrap();
    assert!(q.skipped.is_empty());
    assert_eq!(q.items.len(), 18);
    assert_eq!(q.items[0].question_id, QuestionId::Int(1));
    assert_eq!(q.items[0].category(), Some("adversarial"));
    assert!(q.items[0].text.ends_with("\nAnswer the question using a single word or phrase."));
    assert_eq!(q.items[0].image.as_deref(), Some("COCO_val2014_000000000001.jpg"));
}

#[test]
fn scienceqa_items_give_the_prompts_model_vqa_science_records() {
    // The fixture's answers were written with model_vqa_science.py's `cur_prompt` for each item
    // (with --single-pred-prompt); our conversion of the question file must give the same string.
    let items = read_scienceqa_items(&fx("scienceqa/llava_test_CQM-A.json")).unwrap();
    assert!(items.skipped.is_empty());
    assert_eq!(items.items.len(), 12);
    let answers = eval::read_answers(&fx("scienceqa/answers.jsonl")).unwrap();
    let mut checked = 0;
    for it in &items.items {
        let e = it.to_eval_item(true);
        for a in answers.iter().filter(|a| a.question_id == e.question_id) {
            assert_eq!(a.prompt, e.prompt, "item {}", e.question_id);
            assert_eq!(e.prompt.contains("<image>"), it.image.is_some());
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked}");
}

/// `fixtures/writer/pope_answers.jsonl` was written by AnswerWriter (ids seeded) from the POPE
/// fixture's answers; the fixture script ran the reference `eval_pope.py` on it unchanged and recorded
/// that its output equals the output on the `json.dumps`-written file (`writer/reference_check.json`).
/// This test writes the file again and requires the same bytes, ids included. To create the file
/// after changing the POPE fixture: `VLMSCALE_WRITE_FIXTURES=1 cargo test -p vlmscale-eval --test
/// answer_format`, then rerun the fixture script.
#[test]
fn answer_writer_file_accepted_by_eval_pope_is_reproduced() {
    let committed = fx("writer/pope_answers.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pope_answers.jsonl");
    let (w, _) = AnswerWriter::open(&out).unwrap();
    let mut w = w.with_id_seed(7);
    for a in eval::read_answers(&fx("pope/answers.jsonl")).unwrap() {
        w.write(&a.question_id, &a.prompt, &a.text, "llava-v1.5-7b").unwrap();
    }
    drop(w);
    let ours = std::fs::read(&out).unwrap();
    if std::env::var_os("VLMSCALE_WRITE_FIXTURES").is_some() {
        std::fs::create_dir_all(committed.parent().unwrap()).unwrap();
        std::fs::write(&committed, &ours).unwrap();
    }
    assert_eq!(String::from_utf8(ours).unwrap(), std::fs::read_to_string(&committed).unwrap());
    let check: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx("writer/reference_check.json")).unwrap()).unwrap();
    assert_eq!(check["eval_pope_output_identical"], true);
}
