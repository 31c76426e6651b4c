//! Determinism, the LLaVA JSONL/PNG round trip, and clear errors on bad files and configs.

use std::path::{Path, PathBuf};

use synth::{read_dataset, read_records, write_dataset, DatasetConfig, Error, Generator, SceneConfig, Task};

fn generator(task: Task, seed: u64) -> Generator {
    Generator::new(DatasetConfig { task, seed, questions_per_family: 2, ..Default::default() }).unwrap()
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn same_seed_gives_identical_bytes() {
    for task in [Task::SortOfClevr, Task::FineDetail] {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_dataset(a.path(), "train", &generator(task, 42).generate(0..30).unwrap()).unwrap();
        write_dataset(b.path(), "train", &generator(task, 42).generate(0..30).unwrap()).unwrap();
        let (fa, fb) = (files(a.path()), files(b.path()));
        assert_eq!(fa.len(), 31);
        assert!(fa == fb, "{task:?}: same seed wrote different files");

        let c = tempfile::tempdir().unwrap();
        write_dataset(c.path(), "train", &generator(task, 43).generate(0..30).unwrap()).unwrap();
        let fc = files(c.path());
        let contents = |f: &[(PathBuf, Vec<u8>)]| f.iter().map(|x| x.1.clone()).collect::<Vec<_>>();
        assert_ne!(contents(&fa), contents(&fc), "{task:?}: different seeds gave the same data");
    }
}

#[test]
fn any_index_alone_equals_the_batch() {
    let g = generator(Task::SortOfClevr, 1);
    let batch = g.generate(0..20).unwrap();
    for i in [0u64, 7, 19] {
        let one = g.sample(i).unwrap();
        assert_eq!(one.image, batch[i as usize].image);
        assert_eq!(one.qas, batch[i as usize].qas);
    }
    // Images differ from one another.
    assert_ne!(batch[0].image, batch[1].image);
}

#[test]
fn jsonl_is_llava_format_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mut samples = generator(Task::SortOfClevr, 2).generate(0..5).unwrap();
    samples.extend(generator(Task::FineDetail, 2).generate(0..3).unwrap());
    let jsonl = write_dataset(dir.path(), "val", &samples).unwrap();
    assert_eq!(jsonl, dir.path().join("val.jsonl"));

    let text = std::fs::read_to_string(&jsonl).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5 * 12 + 3);
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["id"], "sort_of_clevr_s2_0000000_q0");
    assert_eq!(v["image"], "images/sort_of_clevr_s2_0000000.png");
    assert_eq!(v["conversations"][0]["from"], "human");
    assert!(v["conversations"][0]["value"].as_str().unwrap().starts_with("<image>\nWhat is the shape of the "));
    assert_eq!(v["conversations"][1]["from"], "gpt");
    assert_eq!(v["family"], "shape");
    assert_eq!(v["task"], "sort_of_clevr");
    let last: serde_json::Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
    assert_eq!(last["task"], "fine_detail");
    assert_eq!(last["family"], "digits");

    let back = read_dataset(&jsonl).unwrap();
    assert_eq!(back.len(), samples.len());
    for (a, b) in samples.iter().zip(&back) {
        assert_eq!(a.id, b.id);
        assert_eq!(a.task, b.task);
        assert_eq!(a.image, b.image, "PNG must be lossless");
        assert_eq!(a.qas, b.qas);
    }
    let records = read_records(&jsonl).unwrap();
    assert_eq!(records.len(), lines.len());
    assert_eq!(records[3].line, 4);
    // No temporary files are left behind.
    assert_eq!(files(dir.path()).len(), 1 + samples.len());
}

/// Writes a small valid dataset and returns (dir, jsonl path, its lines).
fn valid() -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = write_dataset(dir.path(), "d", &generator(Task::SortOfClevr, 4).generate(0..2).unwrap()).unwrap();
    let lines = std::fs::read_to_string(&jsonl).unwrap().lines().map(String::from).collect();
    (dir, jsonl, lines)
}

/// Replaces line `k` (0-based) and returns the read error's message.
fn error_with_line(k: usize, new: &str) -> (Error, String) {
    let (_dir, jsonl, mut lines) = valid();
    lines[k] = new.to_string();
    std::fs::write(&jsonl, lines.join("\n")).unwrap();
    let e = read_dataset(&jsonl).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("d.jsonl"), "message {msg:?} must name the file");
    assert!(
        msg.contains(&format!(":{}:", k + 1)) || matches!(e, Error::Image { .. }),
        "message {msg:?} must name line {}",
        k + 1
    );
    (e, msg)
}

fn edit(line: &str, f: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
    f(&mut v);
    v.to_string()
}

#[test]
fn malformed_jsonl_names_file_and_line() {
    let (_d, _j, lines) = valid();
    let (e, _) = error_with_line(2, "{\"id\": \"x\", \"image\": ");
    assert!(matches!(e, Error::Json { line: 3, .. }), "{e:?}");
    let (e, _) = error_with_line(
        4,
        &edit(&lines[4], |v| {
            v.as_object_mut().unwrap().remove("conversations");
        }),
    );
    assert!(matches!(e, Error::Json { line: 5, .. }), "{e:?}");
}

#[test]
fn bad_values_are_named() {
    let (_d, _j, lines) = valid();
    let cases: Vec<(String, &str)> = vec![
        (edit(&lines[1], |v| v["family"] = "colour".into()), "unknown family \"colour\""),
        (edit(&lines[1], |v| v["task"] = "clevr".into()), "unknown task \"clevr\""),
        (edit(&lines[1], |v| v["family"] = "digits".into()), "does not belong to task"),
        (edit(&lines[1], |v| v["conversations"][0]["from"] = "user".into()), "roles"),
        (edit(&lines[1], |v| v["conversations"][0]["value"] = "What is it?".into()), "<image>"),
        (edit(&lines[1], |v| v["conversations"][1]["value"] = "".into()), "answer"),
        (
            edit(&lines[1], |v| {
                v["conversations"].as_array_mut().unwrap().pop();
            }),
            "2 turns",
        ),
        (lines[0].clone(), "duplicate id"),
    ];
    for (line, needle) in cases {
        let (e, msg) = error_with_line(1, &line);
        assert!(matches!(e, Error::BadRecord { line: 2, .. }), "{e:?}");
        assert!(msg.contains(needle), "{msg:?} should contain {needle:?}");
    }
}

#[test]
fn missing_and_corrupt_images_are_named() {
    let (_d, _j, lines) = valid();
    let (e, msg) = error_with_line(1, &edit(&lines[1], |v| v["image"] = "images/nope.png".into()));
    assert!(matches!(e, Error::MissingImage { line: 2, .. }), "{e:?}");
    assert!(msg.contains("nope.png"), "{msg}");

    let (dir, jsonl, _) = valid();
    let png = dir.path().join("images/sort_of_clevr_s4_0000001.png");
    let bytes = std::fs::read(&png).unwrap();
    std::fs::write(&png, &bytes[..bytes.len() / 2]).unwrap();
    let e = read_dataset(&jsonl).unwrap_err();
    assert!(matches!(e, Error::Image { .. }), "{e:?}");
    assert!(e.to_string().contains("sort_of_clevr_s4_0000001.png"), "{e}");

    let e = read_dataset(&dir.path().join("absent.jsonl")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }) && e.to_string().contains("absent.jsonl"), "{e}");
}

#[test]
fn bad_configs_are_errors_not_hangs() {
    let bad = [
        DatasetConfig { scene: SceneConfig { image_size: 8, ..Default::default() }, ..Default::default() },
        DatasetConfig { scene: SceneConfig { half_size: 0, ..Default::default() }, ..Default::default() },
        DatasetConfig { questions_per_family: 0, ..Default::default() },
    ];
    for c in bad {
        assert!(matches!(Generator::new(c), Err(Error::Config { .. })), "{c:?}");
    }
    // Fits one object but not six at 10-px spacing: a clear error after a bounded number of tries.
    let crowded = DatasetConfig { scene: SceneConfig { image_size: 20, ..Default::default() }, ..Default::default() };
    let e = Generator::new(crowded).unwrap().sample(0).unwrap_err();
    assert!(matches!(e, Error::SceneDoesNotFit { .. }), "{e:?}");

    use synth::FineDetailConfig;
    let fine_bad = [
        FineDetailConfig { min_digits: 0, ..Default::default() },
        FineDetailConfig { min_digits: 5, max_digits: 3, ..Default::default() },
        FineDetailConfig { glyph_scale: 0, ..Default::default() },
        FineDetailConfig { max_digits: 30, ..Default::default() },
    ];
    for f in fine_bad {
        let c = DatasetConfig { task: Task::FineDetail, fine_detail: f, ..Default::default() };
        let e = Generator::new(c).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{f:?}: {e:?}");
    }
    let e = write_dataset(tempfile::tempdir().unwrap().path(), "../x", &[]).unwrap_err();
    assert!(matches!(e, Error::Config { field: "name", .. }));
}

#[test]
fn config_deserialises_with_defaults() {
    let c: DatasetConfig = serde_json::from_str(r#"{"task": "fine_detail", "seed": 9}"#).unwrap();
    assert_eq!(c.task, Task::FineDetail);
    assert_eq!(c.seed, 9);
    assert_eq!(c.scene.image_size, 80);
    assert_eq!((c.fine_detail.max_digits, c.fine_detail.glyph_scale, c.fine_detail.digit_cell), (3, 2, 10));
}

#[test]
fn chw_buffer_layout() {
    let s = generator(Task::SortOfClevr, 0).sample(0).unwrap();
    let buf = synth::to_chw_f32(&s.image);
    assert_eq!(buf.len(), 3 * 80 * 80);
    for (x, y) in [(0u32, 0u32), (17, 41), (79, 79)] {
        let p = s.image.get_pixel(x, y).0;
        for c in 0..3 {
            assert_eq!(buf[c * 6400 + (y * 80 + x) as usize], p[c] as f32 / 255.0);
        }
    }
    let other = generator(Task::SortOfClevr, 0).sample(1).unwrap();
    let batch = synth::batch_chw_f32(&[&s.image, &other.image]).unwrap();
    assert_eq!(&batch[..buf.len()], &buf[..]);
    assert_eq!(batch[buf.len()..], synth::to_chw_f32(&other.image)[..]);
}
