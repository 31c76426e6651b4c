//! The LLaVA splice: the LLM input embeddings with the projected visual tokens at `<image>`
//! (LLaVA `llava_arch.py`, `prepare_inputs_labels_for_multimodal`).
use candle_core::Tensor;

use super::PromptTokens;
use crate::{Error, Result};
use models::decoder::Decoder;

/// Builds the LLM input (1, Q + n·V, H): the token embeddings of each text chunk, with image i's
/// visual embeddings `visual.get(i)` (each (V, H)) in place of the i-th `<image>` marker.
///
/// `visual`: (n_images, V, H), already projected to the LLM width; `None` only for a prompt without
/// `<image>`.
/// Errors: [`Error::Invalid`] if the number of markers and images differ; [`Error::Shape`] if the
/// visual width is not H; [`Error::ContextWindow`] if Q + n·V > `max_position_embeddings`.
pub fn input_embeddings(decoder: &Decoder, prompt: &PromptTokens, visual: Option<&Tensor>) -> Result<Tensor> {
    let h = decoder.config().hidden_size;
    let n_img = prompt.image_count();
    let (given, v) = match visual {
        None => (0, 0),
        Some(t) => {
            let d = t.dims();
            if d.len() != 3 || d[2] != h {
                return Err(Error::Shape {
                    name: "visual embeddings".into(),
                    expected: vec![n_img, 0, h],
                    found: d.to_vec(),
                });
            }
            (d[0], d[1])
        }
    };
    if given != n_img {
        return Err(Error::Invalid(format!(
            "prompt has {n_img} <image> placeholder(s) but {given} image(s) of visual embeddings were given"
        )));
    }
    let total = prompt.input_len(v);
    let max = decoder.config().max_position_embeddings;
    if total > max {
        return Err(Error::ContextWindow { len: total, max });
    }
    if total == 0 {
        return Err(Error::Invalid("empty prompt".into()));
    }
    let dev = decoder.device();
    let mut parts: Vec<Tensor> = vec![];
    for (i, chunk) in prompt.text_chunks().into_iter().enumerate() {
        if let (true, Some(vis)) = (i > 0, visual) {
            parts.push(vis.get(i - 1)?.to_dtype(decoder.dtype())?);
        }
        if !chunk.is_empty() {
            let ids = Tensor::new(chunk.as_slice(), dev)?.unsqueeze(0)?;
            parts.push(decoder.embed_tokens(&ids)?.squeeze(0)?);
        }
    }
    Ok(Tensor::cat(&parts, 0)?.unsqueeze(0)?)
}
