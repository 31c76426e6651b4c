//! The tokenizer: HF compatibility (reference encodings from the Python `tokenizers` and
//! `transformers`, committed by `fixtures/make_tokenizer_fixture.py`), coverage of all generated
//! text, exact round trips, digit splitting, and errors on bad files.

use synth::tokenizer::{build_tokenizer, load_tokenizer, save_tokenizer, SPECIAL_TOKENS};
use synth::{DatasetConfig, Error, Generator, Task};

const FIXTURE_TOKENIZER: &str = include_str!("fixtures/tokenizer.json");
const FIXTURE_PYTHON: &str = include_str!("fixtures/tokenizer_python.json");

fn chatml(question: &str, answer: &str) -> String {
    format!(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\n{question}<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>\n"
    )
}

#[test]
fn built_tokenizer_equals_the_committed_fixture() {
    let built: serde_json::Value =
        serde_json::from_str(&build_tokenizer(&[]).unwrap().to_string(false).unwrap()).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(FIXTURE_TOKENIZER).unwrap();
    assert_eq!(built, fixture, "vocabulary changed: regenerate tests/fixtures (see make_tokenizer_fixture.py)");
}

#[test]
fn encodings_match_python_tokenizers_and_transformers() {
    let tok = build_tokenizer(&[]).unwrap();
    let reference: serde_json::Value = serde_json::from_str(FIXTURE_PYTHON).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let hf_ids: Vec<u32> = serde_json::from_value(case["transformers_ids"].clone()).unwrap();
        let enc = tok.encode(text, false).unwrap();
        assert_eq!(enc.get_ids(), &ids[..], "{text:?}");
        assert_eq!(enc.get_ids(), &hf_ids[..], "{text:?}");
        assert_eq!(tok.decode(&ids, false).unwrap(), case["decoded"].as_str().unwrap());
    }
}

#[test]
fn special_tokens_have_fixed_ids() {
    let tok = build_tokenizer(&[]).unwrap();
    for (id, t) in SPECIAL_TOKENS.iter().enumerate() {
        assert_eq!(tok.token_to_id(t), Some(id as u32), "{t}");
        // Never split, even when glued to text.
        let enc = tok.encode(format!("yes{t}no"), false).unwrap();
        assert_eq!(enc.get_tokens(), ["yes", *t, "no"]);
    }
}

#[test]
fn all_generated_text_is_known_and_round_trips() {
    let tok = build_tokenizer(&[]).unwrap();
    let unk = tok.token_to_id("<unk>").unwrap();
    let mut checked = 0;
    for task in [Task::SortOfClevr, Task::FineDetail] {
        let gen =
            Generator::new(DatasetConfig { task, seed: 21, questions_per_family: 3, ..Default::default() }).unwrap();
        for s in gen.generate(0..300).unwrap() {
            for qa in &s.qas {
                for text in [
                    chatml(&qa.question, &qa.answer),
                    format!("USER: <image>\n{} ASSISTANT: {}", qa.question, qa.answer),
                ] {
                    let enc = tok.encode(text.as_str(), false).unwrap();
                    assert!(!enc.get_ids().contains(&unk), "<unk> in {text:?}: {:?}", enc.get_tokens());
                    assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), text);
                    checked += 1;
                }
                if let Some(content) = &s.content {
                    for grid in [1, 8, 16] {
                        let caption = content.caption(grid);
                        let enc = tok.encode(caption.as_str(), false).unwrap();
                        assert!(!enc.get_ids().contains(&unk), "<unk> in {caption:?}: {:?}", enc.get_tokens());
                        assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), caption);
                    }
                }
                // The answer alone (what the loss targets) round-trips too.
                let ids = tok.encode(qa.answer.as_str(), false).unwrap().get_ids().to_vec();
                assert_eq!(tok.decode(&ids, false).unwrap(), qa.answer);
            }
        }
    }
    assert!(checked > 2 * 300 * 18);
}

#[test]
fn numbers_of_any_length_split_into_digits() {
    let tok = build_tokenizer(&[]).unwrap();
    for n in ["0", "7", "42", "907", "31415926535897932384626433832795028841971"] {
        let enc = tok.encode(n, false).unwrap();
        let tokens: Vec<String> = n.chars().map(|c| c.to_string()).collect();
        assert_eq!(enc.get_tokens(), &tokens[..]);
        let spaced = tok.encode(format!("is {n}"), false).unwrap();
        assert_eq!(spaced.get_tokens().len(), 1 + n.len());
        assert_eq!(spaced.get_tokens()[1], format!(" {}", &n[..1]));
    }
}

#[test]
fn extra_texts_extend_the_vocabulary() {
    let base = build_tokenizer(&[]).unwrap();
    let more = build_tokenizer(&["Describe the scene.".to_string()]).unwrap();
    assert_eq!(base.token_to_id(" scene"), None);
    assert!(more.token_to_id(" scene").is_some() && more.token_to_id("Describe").is_some());
    assert_eq!(more.get_vocab_size(true), base.get_vocab_size(true) + 2);
}

#[test]
fn save_load_and_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    let tok = build_tokenizer(&[]).unwrap();
    save_tokenizer(&tok, &path).unwrap();
    let back = load_tokenizer(&path).unwrap();
    let text = chatml("What is the shape of the red object?", "circle");
    assert_eq!(
        back.encode(text.as_str(), false).unwrap().get_ids(),
        tok.encode(text.as_str(), false).unwrap().get_ids()
    );

    let e = load_tokenizer(&dir.path().join("missing.json")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }) && e.to_string().contains("missing.json"), "{e}");
    let full = std::fs::read_to_string(&path).unwrap();
    for bad in ["not json", &full[..full.len() / 2], r#"{"model": {"type": "WordLevel"}}"#] {
        std::fs::write(&path, bad).unwrap();
        let e = load_tokenizer(&path).unwrap_err();
        assert!(matches!(e, Error::Tokenizer { .. }) && e.to_string().contains("tokenizer.json"), "{e}");
    }
}

#[test]
fn chatml_prompt_matches_transformers_apply_chat_template() {
    let reference: serde_json::Value = serde_json::from_str(FIXTURE_PYTHON).unwrap();
    let chat = &reference["chat"];
    let (q, a) = (chat["question"].as_str().unwrap(), chat["answer"].as_str().unwrap());
    assert_eq!(synth::tokenizer::chatml_prompt(q, None), chat["prompt"].as_str().unwrap());
    assert_eq!(synth::tokenizer::chatml_prompt(q, Some(a)), chat["full"].as_str().unwrap());
    let tok = build_tokenizer(&[]).unwrap();
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(chat["eos_token_id"].as_u64().unwrap() as u32));
    assert_eq!(tok.token_to_id("<pad>"), Some(chat["pad_token_id"].as_u64().unwrap() as u32));
    assert_eq!(tok.token_to_id("<unk>"), Some(chat["unk_token_id"].as_u64().unwrap() as u32));
    assert_eq!(synth::tokenizer::chatml_prompt(q, Some(a)), chatml(q, a));
}

#[test]
fn tokenizer_config_equals_the_committed_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer_config.json");
    synth::tokenizer::save_tokenizer_config(&path).unwrap();
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(include_str!("fixtures/tokenizer_config.json")).unwrap();
    assert_eq!(written, fixture);
}
