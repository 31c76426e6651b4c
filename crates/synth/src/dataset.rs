//! Datasets: deterministic in-memory generation, and LLaVA-format PNG + JSONL files on disk.
//!
//! On-disk layout (LLaVA's instruction-tuning format, `llava/train/train.py` `LazySupervisedDataset`):
//! ```text
//! DIR/NAME.jsonl              one record per question
//! DIR/images/ID.png           one PNG per image, shared by that image's questions
//! ```
//! Each JSONL line is
//! `{"id": "...", "image": "images/ID.png", "conversations": [{"from": "human", "value": "<image>\nQUESTION"},
//! {"from": "gpt", "value": "ANSWER"}], "family": "shape", "task": "sort_of_clevr"}`;
//! `image` is relative to the JSONL file's directory (LLaVA's `--image_folder`). Every file is written
//! to a temporary file in the same directory and renamed into place, so a crash never leaves a
//! truncated file under the final name.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use image::RgbImage;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fine_detail::{FineDetailConfig, FineDetailScene};
use crate::questions::{self, Family, Qa, DIGITS_QUESTION};
use crate::scene::{Scene, SceneConfig};

/// The token LLaVA splices the visual embeddings in at; prefixes every human turn, followed by `\n`.
pub const IMAGE_TOKEN: &str = "<image>";

/// Which generated benchmark an image belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Sort-of-CLEVR relational reasoning (families shape … count).
    #[cfg_attr(feature = "clap", value(name = "sort_of_clevr"))]
    SortOfClevr,
    /// Fine detail: read a small number (family digits).
    #[cfg_attr(feature = "clap", value(name = "fine_detail"))]
    FineDetail,
    /// Knowledge about what is shown: one Sort-of-CLEVR object, asked a fact about its type (family
    /// fact, [`crate::facts`]).
    #[cfg_attr(feature = "clap", value(name = "object_facts"))]
    ObjectFacts,
}

impl Task {
    /// Every task.
    pub const ALL: [Task; 3] = [Task::SortOfClevr, Task::FineDetail, Task::ObjectFacts];

    /// The JSONL / file-name spelling: `sort_of_clevr`, `fine_detail` or `object_facts`.
    pub fn name(self) -> &'static str {
        match self {
            Task::SortOfClevr => "sort_of_clevr",
            Task::FineDetail => "fine_detail",
            Task::ObjectFacts => "object_facts",
        }
    }
    /// Parses [`Self::name`]; `None` if unknown.
    pub fn from_name(name: &str) -> Option<Task> {
        Task::ALL.into_iter().find(|t| t.name() == name)
    }
    /// Whether `family` belongs to this task.
    pub fn has_family(self, family: Family) -> bool {
        match self {
            Task::SortOfClevr => Family::SORT_OF_CLEVR.contains(&family),
            Task::FineDetail => family == Family::Digits,
            Task::ObjectFacts => family == Family::Fact || family == Family::Name,
        }
    }
}

/// Ground truth of a generated image (absent for images read back from disk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    /// A Sort-of-CLEVR scene.
    SortOfClevr(Scene),
    /// A fine-detail scene.
    FineDetail(FineDetailScene),
    /// An `object_facts` image: the scene, the colour of the object asked about, and the colours of
    /// the objects drawn (the asked one among them, in colour order; the asked one alone with
    /// `DatasetConfig::fact_objects` = 1).
    ObjectFacts(Scene, crate::Colour, Vec<crate::Colour>),
}

impl Content {
    /// The scene's caption on a `grid × grid` layout ([`Scene::caption`], [`FineDetailScene::caption`]).
    pub fn caption(&self, grid: u32) -> String {
        match self {
            Content::SortOfClevr(s) => s.caption(grid),
            Content::FineDetail(s) => s.caption(grid),
            Content::ObjectFacts(s, _, shown) => s.caption_of(grid, shown),
        }
    }

    /// What each patch of a `grid × grid` layout holds ([`Scene::grid_cells_of`] with every object,
    /// [`FineDetailScene::grid_cells`]).
    pub fn grid_cells(&self, grid: u32) -> Vec<crate::grid_caption::Cell> {
        match self {
            Content::SortOfClevr(s) => s.grid_cells_of(grid, &crate::Colour::ALL),
            Content::FineDetail(s) => s.grid_cells(grid),
            Content::ObjectFacts(s, asked, shown) => s.grid_cells_asked(grid, shown, *asked),
        }
    }

    /// The scene as its patch-grid caption ([`crate::grid_caption`]) on a `grid × grid` layout.
    pub fn grid_caption(&self, grid: u32) -> String {
        match self {
            Content::SortOfClevr(s) => s.grid_caption_of(grid, &crate::Colour::ALL),
            Content::FineDetail(s) => s.grid_caption(grid),
            Content::ObjectFacts(s, asked, shown) => {
                crate::grid_caption::words_of(&s.grid_cells_asked(grid, shown, *asked))
            }
        }
    }
}

/// How a text corpus writes a scene in the place of its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum CaptionFormat {
    /// A sentence per object: "red circle at row 0 column 3, …" ([`Content::caption`]).
    #[default]
    Sentence,
    /// One word per patch of the tower's grid ([`crate::grid_caption`], [`Content::grid_caption`]).
    Grid,
    /// One input vector per patch of the tower's grid: the sum of the embeddings of the patch's
    /// content, row and column words ([`crate::grid_caption::grid_sum_words`]).
    #[serde(rename = "grid-sum")]
    #[cfg_attr(feature = "clap", value(name = "grid-sum"))]
    GridSum,
    /// One word per cell of an n × n grid, n drawn per document from 1, 2, 4 and 8: the layouts of
    /// V = 1, 4, 16 and 64 pooled visual tokens, so that the LLM finds the object's word wherever
    /// and among however many cells it stands ([`crate::grid_caption`] at grid n).
    Grids,
}

impl CaptionFormat {
    /// The grid sizes n of [`CaptionFormat::Grids`] (n × n cells).
    pub const GRIDS: [u32; 4] = [1, 2, 4, 8];
}

/// One image with its questions.
#[derive(Debug, Clone)]
pub struct ImageSample {
    /// Unique id, also the PNG file stem (`{task}_s{seed}_{index:07}` when generated).
    pub id: String,
    /// Which benchmark the image belongs to.
    pub task: Task,
    /// `image_size × image_size` RGB image (see [`crate::render::to_chw_f32`] for a model buffer).
    pub image: RgbImage,
    /// The questions about this image, with answers and family tags.
    pub qas: Vec<Qa>,
    /// The scene the image was drawn from; `None` when read from disk.
    pub content: Option<Content>,
}

/// Everything that determines a generated dataset. Deserialisable with defaults, so a CLI can take
/// it as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatasetConfig {
    /// Which benchmark to generate.
    pub task: Task,
    /// Seed of the whole dataset; image `i` is drawn from its own ChaCha8 stream `i`, so any image
    /// can be generated alone, in any order, in parallel, with identical results. Use different
    /// seeds for train and held-out splits.
    pub seed: u64,
    /// Questions per Sort-of-CLEVR family per image (6 families ⇒ `6 · questions_per_family`
    /// questions per image; the canonical generator asks 10 non-relational + 10 relational), and
    /// fact questions per `object_facts` image. Fine-detail images always get one question.
    pub questions_per_family: usize,
    /// Sort-of-CLEVR layout (used when `task` is `SortOfClevr` or `ObjectFacts`).
    pub scene: SceneConfig,
    /// Fine-detail layout (used when `task` is `FineDetail`).
    pub fine_detail: FineDetailConfig,
    /// Which properties `object_facts` questions ask about ([`FactSplit`]).
    #[serde(skip_serializing_if = "FactSplit::is_all")]
    pub facts: FactSplit,
    /// Percent (0–100) of the `object_facts` questions that ask the object's name instead of a fact
    /// ([`Family::Name`]: "What is the object?" → "red circle"), each question drawn independently.
    /// 0, the default, draws nothing extra, so datasets without name questions are unchanged.
    #[serde(skip_serializing_if = "is_zero")]
    pub name_questions: u32,
    /// Objects drawn in an `object_facts` image (1–6): the one asked about and `fact_objects − 1`
    /// others of the same scene, drawn without replacement. 1, the default, shows the asked object
    /// alone and asks "What is number ⟨k⟩ of the object?", draws nothing extra, so such datasets are
    /// unchanged. With more, each question names the asked object's colour ("What is number ⟨k⟩ of
    /// the red object?", "What is the red object?"), so the answer needs the object the question
    /// selects among several: what a query-conditioned compressor can pick out at V = 1 and a
    /// query-free one must keep all of.
    #[serde(skip_serializing_if = "is_one")]
    pub fact_objects: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

/// The properties an `object_facts` split asks about: VLM training asks the first half, evaluation
/// the second, so that an evaluated fact was only ever taught in the LLM's text pretraining (which
/// covers all of them) and the VLM must use what its LLM knows rather than what VLM training taught.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum FactSplit {
    /// Every property, 0..FACT_PROPERTIES (the text corpus).
    #[default]
    All,
    /// Properties 0..FACT_PROPERTIES/2 (VLM training).
    Train,
    /// Properties FACT_PROPERTIES/2..FACT_PROPERTIES (VLM evaluation).
    Test,
}

impl FactSplit {
    /// The property numbers asked.
    pub fn properties(self) -> std::ops::Range<u32> {
        let (p, half) = (crate::facts::FACT_PROPERTIES, crate::facts::FACT_PROPERTIES / 2);
        match self {
            FactSplit::All => 0..p,
            FactSplit::Train => 0..half,
            FactSplit::Test => half..p,
        }
    }

    fn is_all(&self) -> bool {
        *self == FactSplit::All
    }
}

impl Default for DatasetConfig {
    fn default() -> Self {
        DatasetConfig {
            task: Task::SortOfClevr,
            seed: 0,
            questions_per_family: 1,
            scene: SceneConfig::default(),
            fine_detail: FineDetailConfig::default(),
            facts: FactSplit::All,
            name_questions: 0,
            fact_objects: 1,
        }
    }
}

/// A validated [`DatasetConfig`] that draws images by index.
#[derive(Debug, Clone)]
pub struct Generator {
    config: DatasetConfig,
}

impl Generator {
    /// Validates the config. Errors: [`Error::Config`] naming the bad field.
    pub fn new(config: DatasetConfig) -> Result<Generator> {
        match config.task {
            Task::SortOfClevr | Task::ObjectFacts => {
                config.scene.validate()?;
                if config.questions_per_family == 0 || config.questions_per_family > 1000 {
                    return Err(Error::config(
                        "questions_per_family",
                        format!("{} is outside 1..=1000", config.questions_per_family),
                    ));
                }
                if config.name_questions > 100 {
                    return Err(Error::config(
                        "name_questions",
                        format!("{} is not a percentage (0..=100)", config.name_questions),
                    ));
                }
                if !(1..=6).contains(&config.fact_objects) {
                    return Err(Error::config(
                        "fact_objects",
                        format!("{} objects per image: a scene has 1..=6", config.fact_objects),
                    ));
                }
            }
            Task::FineDetail => config.fine_detail.validate()?,
        }
        Ok(Generator { config })
    }

    /// The validated config.
    pub fn config(&self) -> &DatasetConfig {
        &self.config
    }

    /// The RNG of image `index`: ChaCha8 keyed by (seed, task), stream `index`.
    fn rng(&self, index: u64) -> ChaCha8Rng {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&self.config.seed.to_le_bytes());
        key[8] = self.config.task as u8 + 1;
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream(index);
        rng
    }

    /// Generates image `index`. Deterministic in (config, index).
    /// Errors: [`Error::SceneDoesNotFit`] if the layout is too crowded for the image.
    pub fn sample(&self, index: u64) -> Result<ImageSample> {
        let c = &self.config;
        let id = format!("{}_s{}_{:07}", c.task.name(), c.seed, index);
        let (content, qas) = self.draw(index)?;
        let image = match &content {
            Content::SortOfClevr(scene) => crate::render::render_scene(scene),
            Content::FineDetail(scene) => scene.render(),
            Content::ObjectFacts(scene, _, shown) => crate::render::render_scene_of(scene, shown),
        };
        Ok(ImageSample { id, task: c.task, image, qas, content: Some(content) })
    }

    /// The content and questions of image `index` without rendering it: the same scene and
    /// questions as [`Self::sample`] (rendering draws no random numbers), for text-only uses such as
    /// the LLM's text pretraining corpus (the scene written out by [`Content::caption`]).
    /// Errors: as [`Self::sample`].
    pub fn draw(&self, index: u64) -> Result<(Content, Vec<Qa>)> {
        let mut rng = self.rng(index);
        let c = &self.config;
        Ok(match c.task {
            Task::SortOfClevr => {
                let scene = Scene::sample(&c.scene, &mut rng)?;
                let qas = questions::ask(&scene, c.questions_per_family, &mut rng);
                (Content::SortOfClevr(scene), qas)
            }
            Task::FineDetail => {
                let scene = FineDetailScene::sample(&c.fine_detail, &mut rng)?;
                let qas =
                    vec![Qa { question: DIGITS_QUESTION.to_string(), answer: scene.answer(), family: Family::Digits }];
                (Content::FineDetail(scene), qas)
            }
            Task::ObjectFacts => {
                // A full scene is drawn (same layout rules), then the asked object and
                // `fact_objects - 1` others are kept.
                let scene = Scene::sample(&c.scene, &mut rng)?;
                let colour = crate::Colour::ALL[rng.random_range(0..6)];
                let shape = scene.object(colour).shape;
                let mut shown = vec![colour];
                if c.fact_objects > 1 {
                    let others: Vec<crate::Colour> = crate::Colour::ALL.into_iter().filter(|&o| o != colour).collect();
                    shown.extend(others.choose_multiple(&mut rng, c.fact_objects as usize - 1).copied());
                    shown.sort_by_key(|&o| o as usize);
                }
                let named = (c.fact_objects > 1).then_some(colour);
                let qas = (0..c.questions_per_family)
                    .map(|_| {
                        if c.name_questions > 0 && rng.random_ratio(c.name_questions, 100) {
                            return Qa {
                                question: questions::name_question(named),
                                answer: format!("{} {}", colour.name(), shape.answer()),
                                family: Family::Name,
                            };
                        }
                        let k = rng.random_range(c.facts.properties());
                        Qa {
                            question: crate::facts::question_of(k, named),
                            answer: crate::facts::value(colour, shape, k).to_string(),
                            family: Family::Fact,
                        }
                    })
                    .collect();
                (Content::ObjectFacts(scene, colour, shown), qas)
            }
        })
    }

    /// Generates images `indices` in memory, in parallel (rayon), in index order.
    /// Errors: as [`Self::sample`].
    pub fn generate(&self, indices: Range<u64>) -> Result<Vec<ImageSample>> {
        indices.into_par_iter().map(|i| self.sample(i)).collect()
    }
}

/// One conversation turn of a LLaVA record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// Speaker: `"human"` or `"gpt"`.
    pub from: String,
    /// Text; the human turn starts with `<image>\n`.
    pub value: String,
}

/// A JSONL line as stored (LLaVA's conversation format plus `family` and `task`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlavaRecord {
    /// Unique record id (`{image id}_q{k}`).
    pub id: String,
    /// Image path relative to the JSONL's directory.
    pub image: String,
    /// Exactly two turns: human question, gpt answer.
    pub conversations: Vec<Turn>,
    /// Question family name ([`Family::name`]).
    pub family: String,
    /// Task name ([`Task::name`]).
    pub task: String,
}

/// A validated question record read from a JSONL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Unique record id.
    pub id: String,
    /// The `image` field as written (relative to the JSONL's directory unless absolute).
    pub image: String,
    /// `image` resolved against the JSONL's directory; exists at read time.
    pub image_path: PathBuf,
    /// The question without the `<image>\n` prefix.
    pub question: String,
    /// The single-word (or digit-string) answer.
    pub answer: String,
    /// The question family.
    pub family: Family,
    /// The task.
    pub task: Task,
    /// 1-based line number in the JSONL file.
    pub line: usize,
}

/// The LLaVA record of question `k` of `sample`, whose PNG is at `image` (relative path).
pub fn llava_record(sample: &ImageSample, k: usize, image: &str) -> LlavaRecord {
    let qa = &sample.qas[k];
    LlavaRecord {
        id: format!("{}_q{k}", sample.id),
        image: image.to_string(),
        conversations: vec![
            Turn { from: "human".into(), value: format!("{IMAGE_TOKEN}\n{}", qa.question) },
            Turn { from: "gpt".into(), value: qa.answer.clone() },
        ],
        family: qa.family.name().to_string(),
        task: sample.task.name().to_string(),
    }
}

/// Writes `bytes` to `path` atomically (the `atomic-write-file` crate: a temporary file in the same
/// directory, synced to disk, renamed over `path`). Errors: I/O naming `path`, also when it is an
/// existing folder (checked first: nothing is written).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.is_dir() {
        let e = std::io::Error::new(std::io::ErrorKind::IsADirectory, "is an existing folder, not a file");
        return Err(Error::io(path, e));
    }
    let mut file = atomic_write_file::AtomicWriteFile::open(path).map_err(|e| Error::io(path, e))?;
    file.write_all(bytes).map_err(|e| Error::io(path, e))?;
    file.commit().map_err(|e| Error::io(path, e))
}

/// Saves `img` as PNG at `path`, atomically.
/// Errors: [`Error::Io`], [`Error::Image`].
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    let mut encoded = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut encoded), image::ImageFormat::Png)
        .map_err(|e| Error::Image { path: path.to_path_buf(), source: e })?;
    write_atomic(path, &encoded)
}

/// Writes `samples` under `dir` (created if needed): `dir/images/{id}.png` and `dir/{name}.jsonl`,
/// one record per question, every file atomically. Returns the JSONL path.
/// Errors: [`Error::Io`] naming the file/directory, [`Error::Image`], [`Error::Config`] for an id or
/// name that is not a plain file name.
pub fn write_dataset(dir: &Path, name: &str, samples: &[ImageSample]) -> Result<PathBuf> {
    let plain = |s: &str| !s.is_empty() && !s.contains(['/', '\\']) && s != "." && s != "..";
    if !plain(name) {
        return Err(Error::config("name", format!("{name:?} is not a plain file name")));
    }
    let images = dir.join("images");
    std::fs::create_dir_all(&images).map_err(|e| Error::io(&images, e))?;
    samples.par_iter().try_for_each(|s| {
        if !plain(&s.id) {
            return Err(Error::config("id", format!("{:?} is not a plain file name", s.id)));
        }
        save_png(&s.image, &images.join(format!("{}.png", s.id)))
    })?;
    let jsonl = dir.join(format!("{name}.jsonl"));
    let mut text = String::new();
    for s in samples {
        let image = format!("images/{}.png", s.id);
        for k in 0..s.qas.len() {
            let line = serde_json::to_string(&llava_record(s, k, &image)).expect("records always serialise");
            text.push_str(&line);
            text.push('\n');
        }
    }
    write_atomic(&jsonl, text.as_bytes())?;
    Ok(jsonl)
}

/// Reads and validates a JSONL file written by [`write_dataset`] (or any LLaVA file with single-turn
/// conversations and `family`/`task` fields). Blank lines are skipped.
/// Errors: [`Error::Io`] (unreadable file), [`Error::Json`] (malformed line, with file and line),
/// [`Error::BadRecord`] (wrong roles or turn count, missing `<image>\n` prefix, empty
/// question/answer, unknown family/task or a family that does not belong to the task, duplicate id),
/// [`Error::MissingImage`] (image file absent).
pub fn read_records(path: &Path) -> Result<Vec<Record>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut records = Vec::new();
    let mut ids = HashMap::new();
    let mut seen_images: HashMap<String, PathBuf> = HashMap::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| Error::BadRecord { path: path.to_path_buf(), line: line_no, message };
        let r: LlavaRecord = serde_json::from_str(&line).map_err(|e| Error::Json {
            path: path.to_path_buf(),
            line: line_no,
            source: e,
        })?;
        if r.id.is_empty() {
            return Err(bad("empty `id`".into()));
        }
        if let Some(prev) = ids.insert(r.id.clone(), line_no) {
            return Err(bad(format!("duplicate id {:?} (first on line {prev})", r.id)));
        }
        let [human, gpt] = r.conversations.as_slice() else {
            return Err(bad(format!(
                "`conversations` must have 2 turns (human, gpt), found {}",
                r.conversations.len()
            )));
        };
        if human.from != "human" || gpt.from != "gpt" {
            return Err(bad(format!(
                "turn roles must be \"human\" then \"gpt\", found {:?} then {:?}",
                human.from, gpt.from
            )));
        }
        let Some(question) = human.value.strip_prefix(&format!("{IMAGE_TOKEN}\n")) else {
            return Err(bad(format!("human turn must start with \"{IMAGE_TOKEN}\\n\", found {:?}", human.value)));
        };
        if question.trim().is_empty() || question.contains(IMAGE_TOKEN) {
            return Err(bad(format!("question must be non-empty text with one {IMAGE_TOKEN}, found {question:?}")));
        }
        let answer = gpt.value.as_str();
        if answer.trim().is_empty() || answer.contains('\n') {
            return Err(bad(format!("answer must be one non-empty line, found {answer:?}")));
        }
        let family = Family::from_name(&r.family).ok_or_else(|| {
            let known: Vec<_> = Family::ALL.iter().map(|f| f.name()).collect();
            bad(format!("unknown family {:?} (known: {})", r.family, known.join(", ")))
        })?;
        let task = Task::from_name(&r.task)
            .ok_or_else(|| bad(format!("unknown task {:?} (known: sort_of_clevr, fine_detail)", r.task)))?;
        if !task.has_family(family) {
            return Err(bad(format!("family {:?} does not belong to task {:?}", r.family, r.task)));
        }
        if r.image.is_empty() {
            return Err(bad("empty `image`".into()));
        }
        let image_path = match seen_images.get(&r.image) {
            Some(p) => p.clone(),
            None => {
                let p = base.join(&r.image);
                if !p.is_file() {
                    return Err(Error::MissingImage { path: path.to_path_buf(), line: line_no, image: p });
                }
                seen_images.insert(r.image.clone(), p.clone());
                p
            }
        };
        records.push(Record {
            id: r.id,
            image: r.image,
            image_path,
            question: question.to_string(),
            answer: answer.to_string(),
            family,
            task,
            line: line_no,
        });
    }
    Ok(records)
}

/// Loads a PNG (or any format `image` decodes) as RGB. Errors: [`Error::Image`] naming the file.
pub fn load_image(path: &Path) -> Result<RgbImage> {
    image::open(path).map(|i| i.to_rgb8()).map_err(|e| Error::Image { path: path.to_path_buf(), source: e })
}

/// Reads a dataset back: [`read_records`], then the images, grouping questions by image in order of
/// first appearance. Sample ids are the image file stems; `content` is `None`.
/// Errors: as [`read_records`], plus [`Error::Image`] for an undecodable image and
/// [`Error::BadRecord`] if one image's records disagree on the task or the file has no record (line 1).
pub fn read_dataset(path: &Path) -> Result<Vec<ImageSample>> {
    let records = read_records(path)?;
    if records.is_empty() {
        return Err(Error::BadRecord {
            path: path.to_path_buf(),
            line: 1,
            message: "no records: the file has no question line".into(),
        });
    }
    let mut index: HashMap<PathBuf, usize> = HashMap::new();
    let mut groups: Vec<(PathBuf, Task, Vec<Qa>)> = Vec::new();
    for r in records {
        let qa = Qa { question: r.question, answer: r.answer, family: r.family };
        match index.get(&r.image_path) {
            Some(&g) => {
                if groups[g].1 != r.task {
                    return Err(Error::BadRecord {
                        path: path.to_path_buf(),
                        line: r.line,
                        message: format!("image {:?} is used by both tasks", r.image),
                    });
                }
                groups[g].2.push(qa);
            }
            None => {
                index.insert(r.image_path.clone(), groups.len());
                groups.push((r.image_path, r.task, vec![qa]));
            }
        }
    }
    groups
        .into_par_iter()
        .map(|(p, task, qas)| {
            let image = load_image(&p)?;
            let id = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            Ok(ImageSample { id, task, image, qas, content: None })
        })
        .collect()
}
