//! Seeded random malformations of valid requests — byte edits of the JSON text, and fields replaced
//! by values of the wrong kind or range — must each get 200 or an OpenAI-style JSON error with a
//! 4xx status (never a 5xx, never a dropped connection), and the server must keep serving.
mod common;

use std::io::Cursor;

use common::*;
use serde_json::{json, Value};
use serve::ServeConfig;

/// SplitMix64: a small seeded generator (no statistics needed, only reproducible variety).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A 16 × 16 PNG as a data URL (small requests keep the run short).
fn small_image() -> String {
    let img = image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([(x * 16) as u8, (y * 16) as u8, 128]));
    let mut png = Cursor::new(vec![]);
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    data_url(png.get_ref())
}

fn base_request(url: &str, k: usize) -> Value {
    let model = if k.is_multiple_of(2) { "quecc_qwen2" } else { "llava15_llama" };
    json!({
        "model": model,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What colour is it?"},
            {"type": "image_url", "image_url": {"url": url}},
        ]}],
        "max_tokens": 2, "temperature": 0, "stream": k.is_multiple_of(3),
    })
}

/// Malformed requests sent.
const CASES: usize = 1000;

/// JSON pointers of the fields to tamper with.
const FIELDS: [&str; 12] = [
    "/model",
    "/messages",
    "/messages/0",
    "/messages/0/role",
    "/messages/0/content",
    "/messages/0/content/0",
    "/messages/0/content/0/text",
    "/messages/0/content/1/image_url",
    "/messages/0/content/1/image_url/url",
    "/max_tokens",
    "/temperature",
    "/stream",
];

fn odd_value(rng: &mut Rng, url: &str) -> Value {
    let pool = [
        Value::Null,
        json!(-1),
        json!(0),
        json!(1e308),
        json!(-1e308),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(""),
        json!("x"),
        json!("<image>"),
        json!([]),
        json!({}),
        json!(true),
        json!([[[[[]]]]]),
        json!("data:image/png;base64,"),
        json!(format!("{}AAAA", &url[..url.len() / 2])),
        json!("file:///etc/shadow"),
        json!("\u{0}\u{ffff}"),
        json!({"type": "image_url"}),
        json!([{"type": "text", "text": 5}]),
    ];
    pool[rng.below(pool.len())].clone()
}

#[test]
fn random_malformations_get_4xx_json_errors_and_never_break_the_server() {
    let mut cfg = ServeConfig::new(vec![fixture("quecc_qwen2"), fixture("llava15_llama")]);
    cfg.max_body_bytes = 1 << 20;
    let s = TestServer::start(cfg);
    let url = small_image();
    let mut rng = Rng(20);
    let (mut ok, mut errors) = (0, 0);
    for k in 0..CASES {
        let base = base_request(&url, k);
        let body: Vec<u8> = if k.is_multiple_of(2) {
            // Field replaced by an odd value (or removed).
            let mut v = base.clone();
            let field = FIELDS[rng.below(FIELDS.len())];
            if rng.below(4) == 0 {
                let (parent, key) = field.rsplit_once('/').unwrap();
                match v.pointer_mut(parent).unwrap() {
                    Value::Object(o) => {
                        o.remove(key);
                    }
                    Value::Array(a) => {
                        a.remove(key.parse::<usize>().unwrap());
                    }
                    _ => {}
                }
            } else {
                *v.pointer_mut(field).unwrap() = odd_value(&mut rng, &url);
            }
            v.to_string().into_bytes()
        } else {
            // Byte edits of the JSON text: overwrite, insert or delete a few bytes.
            let mut b = base.to_string().into_bytes();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(b.len());
                match rng.below(3) {
                    0 => b[at] = (rng.next() & 0xFF) as u8,
                    1 => {
                        let set = b"{}[],:\"\\0e-";
                        b.insert(at, set[rng.below(set.len())])
                    }
                    _ => {
                        b.remove(at);
                    }
                }
            }
            b
        };
        let r = s.chat_raw(&body);
        if r.status == 200 {
            ok += 1;
        } else {
            errors += 1;
            assert!(
                (400..500).contains(&r.status),
                "case {k}: status {} for {}",
                r.status,
                String::from_utf8_lossy(&body)
            );
            let j: Value = serde_json::from_slice(&r.body)
                .unwrap_or_else(|e| panic!("case {k}: error body not JSON ({e}): {}", r.text()));
            assert!(j["error"]["code"].is_string() && j["error"]["message"].is_string(), "case {k}: {j}");
        }
        if k.is_multiple_of(25) {
            let r = s.chat(&base_request(&url, k));
            assert_eq!(r.status, 200, "case {k}: a normal request still succeeds: {}", r.text());
        }
    }
    println!("{CASES} random malformations: {ok} answered 200 (harmless edits), {errors} JSON errors, no 5xx");
    assert_eq!(s.metric("vlmscale_requests_total{path=\"/v1/chat/completions\",status=\"500\"}"), None);
    assert!(errors > CASES / 2, "most malformations are errors: {errors}");
}
