//! Figure 1 of the paper: predicted average downstream error against inference FLOPs (log x), one curve
//! per LLM size N (V swept from 1 to the largest V), the observed cells as points sized by V, and the
//! compute-optimal frontier as a dotted line. Written as PNG and SVG (plotters), atomically.
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::frontier::{logspace, CostModel, Domain, FrontierSpec, PaperCost};
use crate::law::{Law, TokenAxis};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        // The embedded font is valid (checked by the plot tests); a failure leaves text unrendered.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// What to draw.
#[derive(Debug, Clone)]
pub struct Figure1 {
    /// The fitted law.
    pub law: Law,
    /// What T is in the law.
    pub axis: TokenAxis,
    /// Q, text tokens per query (the paper draws Q = 0 and Q = 50).
    pub text_tokens: f64,
    /// Observed cells (one task); their N define the curves.
    pub data: Dataset,
    /// Title line.
    pub title: String,
}

/// Colour of the curve for N, on a yellow→red ramp over log N (like the authors' truncated `YlOrRd`).
fn colour(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * t) as u8;
    RGBColor(lerp(254.0, 189.0), lerp(178.0, 0.0), lerp(76.0, 38.0))
}

/// Fills `root` white and returns a chart builder with the figures' caption, margins and label areas.
fn blank_chart<'a, 'b, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
) -> std::result::Result<ChartBuilder<'a, 'b, DB>, String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut builder = ChartBuilder::on(root);
    builder.caption(title, ("sans-serif", 22)).margin(14).x_label_area_size(48).y_label_area_size(64);
    Ok(builder)
}

/// Draws the legend box (upper right, labels at `font_size` px) and presents the figure.
fn legend_and_present<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    root: &DrawingArea<DB, Shift>,
    font_size: u32,
) -> std::result::Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", font_size))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// A figure drawn the same way on any plotters backend (PNG and SVG).
trait Drawable {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String>;
}

impl Drawable for Figure1 {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String> {
        let cost = PaperCost;
        let q = self.text_tokens;
        let sizes = self.data.llm_sizes();
        let vmax = self.data.rows.iter().map(|r| r.visual_tokens).fold(1.0, f64::max);
        let (nmin, nmax) = (sizes[0], *sizes.last().unwrap_or(&sizes[0]));
        let vs = logspace(1.0, vmax, 80);
        let curves: Vec<(f64, Vec<(f64, f64)>)> = sizes
            .iter()
            .map(|&n| {
                (n, vs.iter().map(|&v| (cost.cost(n, q, v), self.law.predict(n, self.axis.tokens(q, v)))).collect())
            })
            .collect();
        let spec = FrontierSpec {
            law: self.law,
            axis: self.axis,
            text_tokens: q,
            sizes: Domain::Range { min: nmin * 0.6, max: nmax * 3.0 },
            tokens: Domain::Range { min: 1.0, max: vmax },
        };
        let (xlo, xhi) = (cost.cost(nmin, q, 1.0) * 0.8, cost.cost(nmax, q, vmax) * 1.25);
        let frontier: Vec<(f64, f64)> = logspace(xlo, xhi, 60)
            .into_iter()
            .filter_map(|b| spec.optimum(&cost, b).ok().flatten())
            .map(|o| (o.cost, o.predicted_error))
            .collect();
        let points: Vec<(f64, f64, f64, f64)> = self
            .data
            .rows
            .iter()
            .map(|r| (r.llm_params, r.visual_tokens, cost.cost(r.llm_params, q, r.visual_tokens), r.error))
            .collect();
        let ys = curves
            .iter()
            .flat_map(|c| c.1.iter().map(|p| p.1))
            .chain(points.iter().map(|p| p.3))
            .chain(frontier.iter().map(|p| p.1));
        let (ylo, yhi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
        let pad = (yhi - ylo).max(1e-3) * 0.08;

        let mut chart = blank_chart(root, &self.title)?
            .build_cartesian_2d((xlo..xhi).log_scale(), (ylo - pad)..(yhi + pad))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(if q == 0.0 {
                "Inference FLOPs = 2·N·V".to_string()
            } else {
                format!("Inference FLOPs = 2·N·({q}+V)")
            })
            .y_desc("Average downstream error")
            .x_label_formatter(&|x| format!("{x:.0e}"))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .label_style(("sans-serif", 14))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| e.to_string())?;
        let ln_span = (nmax / nmin).ln().max(1e-9);
        for (n, pts) in &curves {
            let c = colour((n / nmin).ln() / ln_span);
            chart
                .draw_series(LineSeries::new(pts.iter().cloned(), c.stroke_width(3)))
                .map_err(|e| e.to_string())?
                .label(format!("N = {n}B"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3)));
        }
        for &(n, v, x, y) in &points {
            let c = colour((n / nmin).ln() / ln_span);
            let r = (2.0 + 1.6 * v.ln()).round() as i32;
            chart.draw_series(std::iter::once(Circle::new((x, y), r, c.filled()))).map_err(|e| e.to_string())?;
            chart.draw_series(std::iter::once(Circle::new((x, y), r, BLACK.mix(0.5)))).map_err(|e| e.to_string())?;
        }
        chart
            .draw_series(DashedLineSeries::new(frontier, 3, 5, BLACK.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label("compute-optimal frontier")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(2)));
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
            .map_err(|e| e.to_string())?
            .label(format!("α = {:.3}, β = {:.3}; points sized by V", self.law.alpha(), self.law.beta()))
            .legend(|(x, y)| Circle::new((x + 9, y), 4, BLACK.mix(0.5)));
        legend_and_present(&mut chart, root, 13)
    }
}

impl Figure1 {
    /// Writes `<stem>.png` (1000×700) and `<stem>.svg` atomically; returns both paths.
    ///
    /// Errors: [`Error::Plot`] naming the file if drawing or writing fails; [`Error::Invalid`] for an
    /// empty dataset.
    pub fn write(&self, stem: &Path) -> Result<Vec<PathBuf>> {
        if self.data.rows.is_empty() {
            return Err(Error::Invalid("nothing to plot: no cells".into()));
        }
        write_png_svg(self, stem)
    }
}

/// Draws `fig` into `<stem>.png` (1000×700) and `<stem>.svg`, each written atomically.
fn write_png_svg<F: Drawable>(fig: &F, stem: &Path) -> Result<Vec<PathBuf>> {
    register_font();
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let dir = png.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let plot_err = |path: &Path, msg: String| Error::Plot { path: path.to_path_buf(), msg };
    // plotters encodes the PNG into a file: draw into a scratch file, then publish it atomically.
    let scratch =
        tempfile::Builder::new().suffix(".png").tempfile_in(dir).map_err(|e| plot_err(&png, e.to_string()))?;
    {
        let root = BitMapBackend::new(scratch.path(), (1000, 700)).into_drawing_area();
        fig.draw(&root).map_err(|m| plot_err(&png, m))?;
    }
    let bytes = std::fs::read(scratch.path()).map_err(|e| plot_err(&png, e.to_string()))?;
    crate::output::write_atomic(&png, &bytes)?;
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (1000, 700)).into_drawing_area();
        fig.draw(&root).map_err(|m| plot_err(&svg, m))?;
    }
    crate::output::write_atomic(&svg, s.as_bytes())?;
    Ok(vec![png, svg])
}

/// One training run's loss curve in a [`LearningCurves`] figure.
#[derive(Debug, Clone)]
pub struct Curve {
    /// Legend label (for example the cell id).
    pub label: String,
    /// Where the curve's colour sits on the figure's ramp, 0–1 (for example log N scaled over the grid).
    pub shade: f64,
    /// Dashed instead of solid (for example the query-free ablation).
    pub dashed: bool,
    /// Loss per optimisation step, step 1 first (nats per answer token).
    pub losses: Vec<f64>,
}

/// Training loss against optimisation step for several runs: each curve the mean over consecutive
/// windows of `window` steps (plotted at the window's last step), log-scaled loss axis, and an optional
/// dotted vertical line where stage 2 begins.
#[derive(Debug, Clone)]
pub struct LearningCurves {
    /// Title line.
    pub title: String,
    /// The runs.
    pub curves: Vec<Curve>,
    /// Steps averaged per plotted point (≥ 1).
    pub window: usize,
    /// Steps of stage 1 (0: none drawn).
    pub stage1_steps: usize,
}

impl LearningCurves {
    /// The plotted points of `losses`: (last step of each full or final partial window, its mean),
    /// skipping non-finite losses.
    pub fn smoothed(losses: &[f64], window: usize) -> Vec<(f64, f64)> {
        let w = window.max(1);
        losses
            .chunks(w)
            .enumerate()
            .filter_map(|(i, c)| {
                let ok: Vec<f64> = c.iter().copied().filter(|x| x.is_finite()).collect();
                (!ok.is_empty()).then(|| ((i * w + c.len()) as f64, ok.iter().sum::<f64>() / ok.len() as f64))
            })
            .collect()
    }

    /// Writes `<stem>.png` (1000×700) and `<stem>.svg` atomically; returns both paths.
    ///
    /// Errors: [`Error::Invalid`] when no curve has a finite loss; [`Error::Plot`] naming the file.
    pub fn write(&self, stem: &Path) -> Result<Vec<PathBuf>> {
        if self.curves.iter().all(|c| Self::smoothed(&c.losses, self.window).is_empty()) {
            return Err(Error::Invalid("nothing to plot: no finite loss".into()));
        }
        write_png_svg(self, stem)
    }
}

impl Drawable for LearningCurves {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String> {
        let series: Vec<(&Curve, Vec<(f64, f64)>)> =
            self.curves.iter().map(|c| (c, Self::smoothed(&c.losses, self.window))).collect();
        let pts = series.iter().flat_map(|s| s.1.iter());
        let (xmax, ylo, yhi) = pts.fold((1.0f64, f64::INFINITY, 0.0f64), |(x, lo, hi), &(s, l)| {
            (x.max(s), if l > 0.0 { lo.min(l) } else { lo }, hi.max(l))
        });
        let (ylo, yhi) = (ylo.min(yhi) * 0.8, yhi.max(ylo) * 1.25);
        let mut chart = blank_chart(root, &self.title)?
            .build_cartesian_2d(0.0..xmax, (ylo.max(1e-6)..yhi.max(1e-5)).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("optimisation step")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc(format!("training loss (mean of {} steps)", self.window.max(1)))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .label_style(("sans-serif", 14))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| e.to_string())?;
        if self.stage1_steps > 0 {
            let x = self.stage1_steps as f64;
            chart
                .draw_series(DashedLineSeries::new(vec![(x, ylo.max(1e-6)), (x, yhi)], 2, 6, BLACK.stroke_width(1)))
                .map_err(|e| e.to_string())?
                .label("end of stage 1 (LLM frozen before)")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(1)));
        }
        for (c, pts) in &series {
            let col = colour(c.shade);
            let style = col.stroke_width(2);
            let drawn = if c.dashed {
                chart.draw_series(DashedLineSeries::new(pts.iter().cloned(), 6, 4, style))
            } else {
                chart.draw_series(LineSeries::new(pts.iter().cloned(), style))
            };
            let dashed = c.dashed;
            drawn.map_err(|e| e.to_string())?.label(c.label.clone()).legend(move |(x, y)| {
                let gap = if dashed { 4 } else { 0 };
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (7, 0)], col.stroke_width(2))
                    + PathElement::new(vec![(7 + gap, 0), (18, 0)], col.stroke_width(2))
            });
        }
        legend_and_present(&mut chart, root, 11)
    }
}
