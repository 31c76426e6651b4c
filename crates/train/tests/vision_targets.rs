//! The tower's pretraining targets, recomputed from the drawn pixels: each object's class sits in
//! the patch that holds the centroid of its colour's pixels, and its centre target is that centroid
//! divided by the image size (the absolute position the VLM's left/top questions read).
use synth::{Colour, Content, DatasetConfig, Generator};
use train::vision_pretrain::{patch_targets, PATCH_CLASSES};

#[test]
fn patch_targets_match_the_pixels() {
    let samples = Generator::new(DatasetConfig::default()).unwrap().generate(0..25).unwrap();
    let grid = 8;
    for s in &samples {
        let Some(Content::SortOfClevr(scene)) = &s.content else { panic!("not a Sort-of-CLEVR scene") };
        let (classes, centres, mask) = patch_targets(scene, grid);
        let size = s.image.width() as f64;
        let cell = size / grid as f64;
        assert_eq!(mask.iter().filter(|&&m| m == 1.0).count(), 6, "one patch per object");
        for (ci, colour) in Colour::ALL.into_iter().enumerate() {
            let (mut sx, mut sy, mut n) = (0f64, 0f64, 0f64);
            for (x, y, p) in s.image.enumerate_pixels() {
                if p.0 == colour.rgb() {
                    sx += x as f64;
                    sy += y as f64;
                    n += 1.0;
                }
            }
            assert!(n > 0.0, "image {}: no {} pixels", s.id, colour.name());
            let (mx, my) = (sx / n, sy / n);
            // Circles (radius 5) hold ≈ 81 pixels, squares (11×11) 121.
            let circle = n < 100.0;
            let p = ((my / cell) as usize).min(grid - 1) * grid + ((mx / cell) as usize).min(grid - 1);
            assert_eq!(classes[p] as usize, 1 + 2 * ci + circle as usize, "image {}: {}", s.id, colour.name());
            assert!((classes[p] as usize) < PATCH_CLASSES);
            assert!(
                (centres[2 * p] as f64 - mx / size).abs() <= 0.5 / size,
                "x of {} in image {}",
                colour.name(),
                s.id
            );
            assert!(
                (centres[2 * p + 1] as f64 - my / size).abs() <= 0.5 / size,
                "y of {} in image {}",
                colour.name(),
                s.id
            );
        }
    }
}

#[test]
fn fine_detail_targets_mark_each_digit_patch_with_its_digit() {
    let cfg = DatasetConfig { task: synth::Task::FineDetail, seed: 3, ..DatasetConfig::default() };
    let samples = Generator::new(cfg).unwrap().generate(0..40).unwrap();
    let grid = 8;
    for s in &samples {
        let Some(Content::FineDetail(scene)) = &s.content else { panic!("not a fine-detail scene") };
        let (classes, _, mask) = train::vision_pretrain::fine_detail_targets(scene, grid);
        // The patches with black (text) pixels, in row-major order, from the image itself.
        let cell = s.image.width() / grid as u32;
        let inked: Vec<usize> = (0..grid * grid)
            .filter(|&p| {
                let (r, c) = ((p / grid) as u32, (p % grid) as u32);
                (0..cell).any(|y| (0..cell).any(|x| s.image.get_pixel(c * cell + x, r * cell + y).0 == [0, 0, 0]))
            })
            .collect();
        let digit_patches: Vec<usize> =
            (0..grid * grid).filter(|&p| classes[p] >= train::vision_pretrain::DIGIT_CLASS).collect();
        assert_eq!(digit_patches, inked, "image {}", s.id);
        let read: String = digit_patches
            .iter()
            .map(|&p| char::from(b'0' + (classes[p] - train::vision_pretrain::DIGIT_CLASS) as u8))
            .collect();
        assert_eq!(read, s.qas[0].answer, "image {}", s.id);
        // Distractors keep their object class and centre target.
        assert_eq!(mask.iter().filter(|&&m| m == 1.0).count(), scene.distractors.len());
        assert!(classes.iter().all(|&c| (c as usize) < PATCH_CLASSES));
    }
}
