//! The pictures of `train --plot` (the loss and the test accuracy per epoch) and of
//! `bench --chart` (each op's fraction of the copy ceiling, by family).

use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::chart::{self, BoxError, Picture};
use crate::registry::Family;

/// A training run: the loss of each epoch's forward pass and the test accuracy after each
/// epoch's step.
pub struct Training {
    pub title: String,
    /// What the loss is, for its axis (`mean cross-entropy`, …).
    pub loss_name: String,
    /// The loss on the training set at epoch 1, 2, …, before that epoch's step.
    pub losses: Vec<f32>,
    /// Correct test images after epoch 1, 2, …, of `test_images`.
    pub correct: Vec<usize>,
    pub test_images: usize,
}

impl Picture for Training {
    fn size(&self) -> (u32, u32) {
        (1000, 400)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), BoxError>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let body = chart::title(root, &self.title, None)?;
        let (left, right) = body.split_horizontally(500);
        let epochs = self.losses.len().max(1) as f64;

        let losses: Vec<(f64, f64)> = (1..)
            .zip(&self.losses)
            .map(|(e, &l)| (f64::from(e), f64::from(l)))
            .collect();
        let (_, top) = chart::bounds(losses.iter().map(|(_, l)| l));
        let mut plot = ChartBuilder::on(&left)
            .caption(
                "training loss, at each epoch's forward pass",
                chart::text(16.0),
            )
            .margin(10)
            .margin_right(24)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..epochs, 0.0..top.max(1e-3))?;
        mesh(&mut plot, "epoch", &self.loss_name)?;
        for run in chart::finite_runs(&losses) {
            plot.draw_series(LineSeries::new(run, chart::BLUE.stroke_width(2)))?;
        }
        if let Some(&(e, l)) = losses.last() {
            plot.draw_series(std::iter::once(
                EmptyElement::at((e, l))
                    + Text::new(
                        format!("epoch {e}: {l:.4}"),
                        (-4, -8),
                        chart::text(13.0).pos(Pos::new(HPos::Right, VPos::Bottom)),
                    ),
            ))?;
        }

        let n = self.test_images.max(1) as f64;
        let accuracy: Vec<(f64, f64)> = (1..)
            .zip(&self.correct)
            .map(|(e, &c)| (f64::from(e), 100.0 * c as f64 / n))
            .collect();
        // From the tens below the worst epoch up to 100 %, so the last points are readable.
        let worst = accuracy.iter().map(|p| p.1).fold(100.0, f64::min);
        let floor = ((worst / 10.0).floor() * 10.0).min(90.0);
        let mut plot = ChartBuilder::on(&right)
            .caption(
                format!(
                    "test accuracy, after each epoch's step ({} images)",
                    self.test_images
                ),
                chart::text(16.0),
            )
            .margin(10)
            .margin_right(24)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..epochs, floor..100.0)?;
        mesh(&mut plot, "epoch", "% of the test images right")?;
        plot.draw_series(LineSeries::new(
            accuracy.clone(),
            chart::ORANGE.stroke_width(2),
        ))?;
        if let (Some(&(e, a)), Some(c)) = (accuracy.last(), self.correct.last()) {
            plot.draw_series(std::iter::once(
                EmptyElement::at((e, a))
                    + Text::new(
                        format!("epoch {e}: {a:.2} % ({c} of {})", self.test_images),
                        (-4, 8),
                        chart::text(13.0).pos(Pos::new(HPos::Right, VPos::Top)),
                    ),
            ))?;
        }
        Ok(())
    }
}

fn mesh<DB: DrawingBackend>(
    plot: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    x: &str,
    y: &str,
) -> Result<(), BoxError>
where
    DB::ErrorType: 'static,
{
    plot.configure_mesh()
        .x_desc(x)
        .y_desc(y)
        .x_labels(8)
        .y_labels(8)
        .x_label_formatter(&chart::tick)
        .y_label_formatter(&chart::tick)
        .label_style(chart::text(12.0))
        .axis_desc_style(chart::text(13.0))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.1))
        .draw()?;
    Ok(())
}

/// A family's name in the chart's legend.
fn family_name(family: Family) -> &'static str {
    match family {
        Family::Copy => "copy kernel",
        Family::Activations => "activations",
        Family::GatedAndPrelu => "gated, PReLU",
        Family::Softmax => "softmax family",
        Family::Losses => "losses",
        Family::Layers => "linear layers",
    }
}

/// A family's colour in the chart.
fn family_colour(family: Family) -> RGBColor {
    match family {
        Family::Copy => chart::GREY,
        Family::Activations => chart::BLUE,
        Family::GatedAndPrelu => chart::PURPLE,
        Family::Softmax => chart::GREEN,
        Family::Losses => chart::VERMILION,
        Family::Layers => chart::ORANGE,
    }
}

/// One benchmark result: an op on a shape in a storage type.
pub struct Bar {
    pub family: Family,
    pub label: String,
    /// The op's bandwidth over the copy kernel's on as many elements (1 = the ceiling).
    pub fraction: f64,
}

/// The benchmark chart: one horizontal bar per result, grouped and coloured by family.
pub struct BenchBars {
    pub title: String,
    pub note: String,
    bars: Vec<Bar>,
}

const BAR_HEIGHT: u32 = 22;
const LEGEND_WIDTH: u32 = 150;

impl BenchBars {
    /// The chart of `bars`, sorted by family (the run's order within each).
    pub fn new(title: String, note: String, mut bars: Vec<Bar>) -> BenchBars {
        bars.sort_by_key(|b| b.family);
        BenchBars { title, note, bars }
    }

    fn label_width(&self) -> u32 {
        let longest = self.bars.iter().map(|b| b.label.chars().count()).max();
        (longest.unwrap_or(4) as u32 * 7 + 16).clamp(80, 360)
    }
}

impl Picture for BenchBars {
    fn size(&self) -> (u32, u32) {
        let height = 54 + 40 + 20 + BAR_HEIGHT * self.bars.len().max(1) as u32 + 50;
        (600 + self.label_width() + LEGEND_WIDTH, height)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), BoxError>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let body = chart::title(root, &self.title, Some(&self.note))?;
        let (width, _) = body.dim_in_pixel();
        let (body, legend) = body.split_horizontally(width - LEGEND_WIDTH);
        let n = self.bars.len();
        let percent: Vec<f64> = self.bars.iter().map(|b| 100.0 * b.fraction).collect();
        let largest = percent
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(100.0, f64::max);
        let x_max = (largest * 1.15 / 10.0).ceil() * 10.0;
        // Bar 0 at the top: segment n - 1 - i holds bar i.
        let row = |i: usize| n.saturating_sub(1) - i;
        let labels: Vec<&str> = self.bars.iter().map(|b| b.label.as_str()).collect();
        let y_label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(s) if *s < n => labels[row(*s)].to_string(),
            _ => String::new(),
        };
        let mut plot = ChartBuilder::on(&body)
            .margin(10)
            .margin_right(20)
            .x_label_area_size(40)
            .y_label_area_size(self.label_width())
            .build_cartesian_2d(0.0..x_max, (0..n.saturating_sub(1)).into_segmented())?;
        plot.configure_mesh()
            .disable_y_mesh()
            .y_labels(n.max(1))
            .y_label_formatter(&y_label)
            .x_labels(10)
            .x_label_formatter(&|v| format!("{} %", chart::tick(v)))
            .x_desc("op GB/s ÷ copy-kernel GB/s over as many elements")
            .label_style(chart::text(12.0))
            .axis_desc_style(chart::text(13.0))
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.1))
            .draw()?;
        let segment = |s: usize| {
            if s + 1 < n {
                SegmentValue::Exact(s + 1)
            } else {
                SegmentValue::Last
            }
        };
        for (i, (bar, &p)) in self.bars.iter().zip(&percent).enumerate() {
            let s = row(i);
            if !p.is_finite() {
                plot.draw_series(std::iter::once(Text::new(
                    "not measured".to_string(),
                    (0.0, SegmentValue::CenterOf(s)),
                    chart::text(11.0).pos(Pos::new(HPos::Left, VPos::Center)),
                )))?;
                continue;
            }
            let mut rect = Rectangle::new(
                [(0.0, SegmentValue::Exact(s)), (p, segment(s))],
                family_colour(bar.family).filled(),
            );
            rect.set_margin(3, 3, 0, 0);
            plot.draw_series(std::iter::once(rect))?;
            plot.draw_series(std::iter::once(Text::new(
                format!(" {p:.0} %"),
                (p, SegmentValue::CenterOf(s)),
                chart::text(11.0).pos(Pos::new(HPos::Left, VPos::Center)),
            )))?;
        }
        // The ceiling.
        plot.draw_series(std::iter::once(PathElement::new(
            vec![(100.0, SegmentValue::Exact(0)), (100.0, SegmentValue::Last)],
            BLACK.mix(0.6).stroke_width(1),
        )))?;

        let mut y = 30;
        for family in Family::ALL {
            if !self.bars.iter().any(|b| b.family == family) {
                continue;
            }
            legend.draw(&Rectangle::new(
                [(8, y - 6), (20, y + 6)],
                family_colour(family).filled(),
            ))?;
            legend.draw(&Text::new(
                family_name(family),
                (28, y),
                chart::text(13.0).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
            y += 22;
        }
        Ok(())
    }
}
