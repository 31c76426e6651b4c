//! Figure 1 is written as a real PNG and SVG.
use scaling::law::{Law, TokenAxis};
use scaling::plot::Figure1;

#[test]
fn writes_png_and_svg() {
    let data = scaling::paper::dataset().unwrap().select(Some("reasoning"), None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fig = Figure1 {
        law: Law::Multiplicative { a: 0.59, alpha: 0.071, beta: 0.015, d: 0.0 },
        axis: TokenAxis::Visual,
        text_tokens: 50.0,
        data,
        title: "t".into(),
    };
    let paths = fig.write(&dir.path().join("fig")).unwrap();
    let png = std::fs::read(&paths[0]).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR width and height
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 1000);
    assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 700);
    let svg = std::fs::read_to_string(&paths[1]).unwrap();
    assert!(svg.contains("<svg") && svg.contains("frontier") && svg.contains("N = 7B"));
    // only the two outputs remain (temp files renamed away)
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}
