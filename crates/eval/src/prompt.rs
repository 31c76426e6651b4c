//! Prompt text that LLaVA-1.5's evaluation adds to questions.
//!
//! Source: `docs/Evaluation.md` of haotian-liu/LLaVA ("Short-answer (e.g. VQAv2, MME)": the question,
//! a newline, then [`SHORT_ANSWER_SUFFIX`]; LLaVA's own question files such as
//! `llava_pope_test.jsonl` and `llava_gqa_testdev_balanced.jsonl` already carry it in `text`), and
//! `llava/eval/model_vqa_science.py` (`eval_model`, `--single-pred-prompt`) for ScienceQA.

/// The single-word suffix of short-answer benchmarks (POPE, GQA, TextVQA, MME, VQAv2).
pub const SHORT_ANSWER_SUFFIX: &str = "Answer the question using a single word or phrase.";

/// ScienceQA's single-prediction instruction (`model_vqa_science.py`, `--single-pred-prompt`).
pub const SQA_SINGLE_PRED_SUFFIX: &str = "Answer with the option's letter from the given choices directly.";

/// LLaVA's image placeholder (`llava/constants.py`, `DEFAULT_IMAGE_TOKEN`).
pub const IMAGE_TOKEN: &str = "<image>";

/// `question + "\n" + SHORT_ANSWER_SUFFIX`, the short-answer prompt of `docs/Evaluation.md`.
/// Idempotent: a question that already ends with the suffix is returned unchanged.
pub fn with_short_answer_suffix(question: &str) -> String {
    if question.ends_with(SHORT_ANSWER_SUFFIX) {
        question.to_string()
    } else {
        format!("{question}\n{SHORT_ANSWER_SUFFIX}")
    }
}

/// ScienceQA's two strings for one item, as `model_vqa_science.py` (`eval_model`) builds them from
/// the first conversation turn `value`:
///
/// * `text`, the question given to the model after the image token: `value` with every `<image>`
///   removed, Python-`strip()`ped, then (with `single_pred`) `"\n" + SQA_SINGLE_PRED_SUFFIX`;
/// * `prompt`, the string recorded in the answer line's `"prompt"`: the same, with `"<image>\n"` in
///   front when the item has an image (`eval_science_qa.py` counts an item as multimodal when
///   `'<image>'` is in it).
pub fn scienceqa_prompt(first_turn: &str, has_image: bool, single_pred: bool) -> (String, String) {
    let qs = crate::pyjson::strip(&first_turn.replace(IMAGE_TOKEN, "")).to_string();
    let mut text = qs.clone();
    let mut prompt = if has_image { format!("{IMAGE_TOKEN}\n{qs}") } else { qs };
    if single_pred {
        text = format!("{text}\n{SQA_SINGLE_PRED_SUFFIX}");
        prompt = format!("{prompt}\n{SQA_SINGLE_PRED_SUFFIX}");
    }
    (text, prompt)
}

/// The user turn given to the model for an item with or without an image: `"<image>\n" + text` when
/// there is an image (`model_vqa_loader.py`, `CustomDataset.__getitem__`, with
/// `mm_use_im_start_end` off), `text` otherwise.
pub fn user_turn(text: &str, has_image: bool) -> String {
    if has_image {
        format!("{IMAGE_TOKEN}\n{text}")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_suffix_once() {
        let q = with_short_answer_suffix("Is there a dog?");
        assert_eq!(q, "Is there a dog?\nAnswer the question using a single word or phrase.");
        assert_eq!(with_short_answer_suffix(&q), q);
    }

    #[test]
    fn scienceqa_single_pred() {
        let (text, prompt) = scienceqa_prompt("<image>\nWhich is a mammal?\nA. cat\nB. fish ", true, true);
        assert_eq!(
            text,
            "Which is a mammal?\nA. cat\nB. fish\nAnswer with the option's letter from the given choices directly."
        );
        assert_eq!(prompt, format!("<image>\n{text}"));
        let (text, prompt) = scienceqa_prompt("Which is a mammal?", false, false);
        assert_eq!((text.as_str(), prompt.as_str()), ("Which is a mammal?", "Which is a mammal?"));
    }
}
