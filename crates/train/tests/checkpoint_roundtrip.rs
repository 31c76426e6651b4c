//! What the trainer writes, the engine loads: a checkpoint of every trainable compressor (quecc,
//! quecc-noquery, tokenpacker, avgpool) opens with `engine::model::Vlm` (the path of `generate` and
//! `inspect`) and gives the same greedy answers as the trainer's evaluation path.
use std::path::Path;

use candle_core::{DType, Device};
use synth::{DatasetConfig, Generator};
use train::vision_pretrain::{pretrain_vision, VisionPretrainConfig};
use train::vlm_train::{train_vlm, TrainData, VlmTrainConfig};

fn tiny_tower(dir: &Path) {
    let cfg =
        VisionPretrainConfig { images: 16, eval_images: 8, steps: 2, batch_size: 8, ..VisionPretrainConfig::default() };
    pretrain_vision(&cfg, dir, &mut |_, _, _| {}).unwrap();
}

#[test]
fn every_trained_compressor_loads_in_the_engine_and_answers_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let tower = tmp.path().join("tower");
    tiny_tower(&tower);
    let held = Generator::new(DatasetConfig { seed: 99, questions_per_family: 1, ..DatasetConfig::default() })
        .unwrap()
        .generate(0..2)
        .unwrap();
    for compressor in ["quecc", "quecc-noquery", "tokenpacker", "avgpool"] {
        let out = tmp.path().join(compressor);
        let mut cfg = VlmTrainConfig::new("xs", compressor, 4, &tower, &out);
        cfg.data = TrainData::Generated {
            config: DatasetConfig { questions_per_family: 1, ..DatasetConfig::default() },
            images: 4,
        };
        cfg.batch_size = 4;
        cfg.steps = 3;
        // A larger init than HF's makes the random answers depend on the image and the question.
        cfg.init_std = 0.3;
        train_vlm(&cfg, &mut |_| {}).unwrap();

        let mut engine_vlm = engine::model::Vlm::load(&out, None, DType::F32, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{compressor}: the engine cannot load the trainer's checkpoint: {e}"));
        assert_eq!(engine_vlm.visual_tokens(), 4, "{compressor}");
        let mut trained = train::eval::load_vlm(&out).unwrap();
        for s in &held {
            let feats = train::features::FeatureSet::compute(&trained.tower, &[&s.image], 1).unwrap();
            let f = feats.gather(&candle_core::Tensor::new(&[0u32], &Device::Cpu).unwrap(), DType::F32).unwrap();
            for qa in &s.qas {
                let q = qa.question.strip_prefix("<image>\n").unwrap_or(&qa.question);
                let want = trained.answer(&f, q, 8).unwrap();
                let img = image::DynamicImage::ImageRgb8(s.image.clone());
                let opts = engine::model::AnswerOptions { max_new_tokens: 8, ..Default::default() };
                let got = engine_vlm.answer_image(&img, q, &opts, |_| Ok(())).unwrap();
                assert_eq!(got.text.trim(), want, "{compressor}: {q}");
            }
        }
    }
}
