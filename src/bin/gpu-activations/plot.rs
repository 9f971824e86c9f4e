//! `gpu-activations plot`: each activation and its derivative over a range, one panel per op,
//! computed by the library's kernels on the chosen adapter: f(x) by the forward op, f′(x) by
//! the backward op with an upstream gradient of ones.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use gpu_activations::{Activation, Tensor};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::BackendArg;
use crate::chart::{self, BoxError, Picture, Target};
use crate::registry::{self, ActivationParams};

/// The note's functions, drawn when no op is named.
const DEFAULT_OPS: [&str; 6] = ["sigmoid", "tanh", "relu", "gelu", "silu", "softplus"];

#[derive(Args)]
pub struct PlotArgs {
    /// Activations to draw, one panel each (names as for `run`; default: sigmoid tanh relu
    /// gelu silu softplus).
    ops: Vec<String>,
    /// The picture: a .svg or .png file.
    #[arg(long, short)]
    output: PathBuf,
    /// The range of x, as MIN,MAX.
    #[arg(long, default_value = "-6,6", allow_hyphen_values = true)]
    range: String,
    /// Points per curve, evenly spaced over the range, ends included.
    #[arg(long, default_value_t = 481)]
    points: usize,
    #[command(flatten)]
    params: ActivationParams,
    #[command(flatten)]
    backend: BackendArg,
}

/// One activation's curves: x, f(x) and f′(x) as the kernels computed them.
struct Curves {
    name: String,
    x: Vec<f64>,
    f: Vec<f64>,
    df: Vec<f64>,
}

/// The picture: a title, a line on where and how the values were computed, and one panel per
/// activation.
struct Panels {
    note: String,
    curves: Vec<Curves>,
}

/// Parses `MIN,MAX`: two finite numbers, the first below the second.
fn parse_range(s: &str) -> Result<(f32, f32), String> {
    let bad = |why: &str| format!("--range {s}: {why}");
    let (lo, hi) = s
        .split_once(',')
        .ok_or_else(|| bad("expected MIN,MAX, e.g. -6,6"))?;
    let number = |v: &str| {
        v.trim()
            .parse::<f32>()
            .map_err(|_| bad(&format!("{:?} is not a number", v.trim())))
    };
    let (lo, hi) = (number(lo)?, number(hi)?);
    if !lo.is_finite() || !hi.is_finite() {
        return Err(bad("the ends must be finite numbers"));
    }
    if lo >= hi {
        return Err(bad("the minimum must be below the maximum"));
    }
    Ok((lo, hi))
}

/// The activation a name stands for (an entry of the registry that applies one forward), or
/// why it cannot be drawn.
fn activation(name: &str) -> Result<Activation, String> {
    let drawable = || {
        registry::registry()
            .iter()
            .filter(|op| op.activation().is_some())
            .map(|op| op.name())
            .collect::<Vec<_>>()
    };
    registry::find(name)
        .ok()
        .and_then(|op| op.activation())
        .ok_or_else(|| {
            format!(
                "cannot plot {name:?}: plot draws the elementwise activations: {}",
                drawable().join(" ")
            )
        })
}

/// Refuses a parameter that none of the activations drawn takes (one that some take applies
/// to those).
fn refuse_parameters(activations: &[Activation], params: &ActivationParams) -> Result<(), String> {
    for flag in params.flags() {
        let registry::Flag::Param(name) = flag else {
            continue;
        };
        if !activations
            .iter()
            .any(|a| a.parameters().iter().any(|(n, _)| *n == name))
        {
            let drawn: Vec<String> = activations
                .iter()
                .map(|a| a.name().replace('_', "-"))
                .collect();
            return Err(format!(
                "{flag} does not apply to {} (no activation drawn takes it)",
                drawn.join(", ")
            ));
        }
    }
    Ok(())
}

/// A range end as typed: `-6`, `0.5`, `1e-30`, `3e38`.
fn number(v: f32) -> String {
    if v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-4) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

pub fn run(args: &PlotArgs) -> Result<ExitCode, BoxError> {
    let names: Vec<&str> = if args.ops.is_empty() {
        DEFAULT_OPS.to_vec()
    } else {
        args.ops.iter().map(String::as_str).collect()
    };
    let activations = names
        .iter()
        .map(|n| activation(n).map(|a| args.params.apply(a)))
        .collect::<Result<Vec<_>, _>>()?;
    refuse_parameters(&activations, &args.params)?;
    let (lo, hi) = parse_range(&args.range)?;
    if !(2..=100_000).contains(&args.points) {
        return Err(format!("--points {} must be from 2 to 100000", args.points).into());
    }
    let target = Target::new(&args.output)?;
    let ctx = args.backend.context()?;
    let n = args.points;
    let x: Vec<f32> = (0..n)
        .map(|i| {
            (f64::from(lo) + (f64::from(hi) - f64::from(lo)) * i as f64 / (n - 1) as f64) as f32
        })
        .collect();
    let xt = Tensor::from_slice(&ctx, &x, &[n])?;
    let ones = Tensor::from_slice(&ctx, &vec![1.0; n], &[n])?;
    // Record every op, then read back: the reads wait once for all of them.
    let outputs = activations
        .iter()
        .map(|&a| Ok((xt.activation(a)?, xt.activation_backward(a, &ones)?)))
        .collect::<gpu_activations::Result<Vec<_>>>()?;
    let wide = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
    let mut curves = Vec::with_capacity(outputs.len());
    for (a, (f, df)) in activations.iter().zip(outputs) {
        curves.push(Curves {
            name: a.name().replace('_', "-"),
            x: wide(x.clone()),
            f: wide(f.to_vec()?),
            df: wide(df.to_vec()?),
        });
    }
    let info = ctx.adapter_info();
    let range = format!("x in [{}, {}]", number(lo), number(hi));
    let picture = Panels {
        note: format!("on {} ({}), {n} points, {range}", info.name, info.backend),
        curves,
    };
    target.write(&picture)?;
    say!("adapter: {info}");
    let panels = picture.curves.len();
    say!(
        "wrote {} ({panels} panel{}, {range}, {n} points)",
        target.path().display(),
        if panels == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

const PANEL: (u32, u32) = (400, 300);
/// Wide enough for the title over a single panel.
const MIN_WIDTH: u32 = 640;

impl Panels {
    fn grid(&self) -> (usize, usize) {
        let cols = self.curves.len().clamp(1, 3);
        (self.curves.len().div_ceil(cols).max(1), cols)
    }
}

impl Picture for Panels {
    fn size(&self) -> (u32, u32) {
        let (rows, cols) = self.grid();
        let width = (PANEL.0 * cols as u32).max(MIN_WIDTH);
        (width, PANEL.1 * rows as u32 + chart::TITLE_WITH_NOTE)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), BoxError>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let body = chart::title(
            root,
            "f(x) by the forward kernel, f′(x) by the backward kernel with gradient 1",
            Some(&self.note),
        )?;
        for (area, curves) in body.split_evenly(self.grid()).iter().zip(&self.curves) {
            panel(area, curves)?;
        }
        Ok(())
    }
}

/// One activation's panel: f and f′ on shared axes, with a legend.
fn panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, c: &Curves) -> Result<(), BoxError>
where
    DB::ErrorType: 'static,
{
    let (x0, x1) = (
        c.x.first().copied().unwrap_or(0.0),
        c.x.last().copied().unwrap_or(1.0),
    );
    let (y0, y1) = chart::bounds(c.f.iter().chain(&c.df));
    let mut plot = ChartBuilder::on(area)
        .caption(&c.name, chart::text(18.0))
        .margin(10)
        .margin_right(18)
        .x_label_area_size(36)
        .y_label_area_size(44)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    plot.configure_mesh()
        .x_desc("x")
        .x_labels(7)
        .y_labels(6)
        .x_label_formatter(&chart::tick)
        .y_label_formatter(&chart::tick)
        .label_style(chart::text(12.0))
        .axis_desc_style(chart::text(13.0))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.1))
        .draw()?;
    let series = [
        (&c.f, format!("{}(x)", c.name), chart::BLUE),
        (&c.df, format!("{}′(x)", c.name), chart::ORANGE),
    ];
    for (values, label, colour) in series {
        let points: Vec<(f64, f64)> = c.x.iter().copied().zip(values.iter().copied()).collect();
        let style = colour.stroke_width(2);
        for (i, run) in chart::finite_runs(&points).into_iter().enumerate() {
            let drawn = plot.draw_series(LineSeries::new(run, style))?;
            // One legend entry per curve, however many pieces NaN or ∞ cut it into.
            if i == 0 {
                drawn
                    .label(label.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            }
        }
    }
    plot.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(chart::text(13.0))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_two_finite_numbers_in_order() {
        assert_eq!(parse_range("-6,6"), Ok((-6.0, 6.0)));
        assert_eq!(parse_range(" -1.5 , 2e1 "), Ok((-1.5, 20.0)));
        for bad in ["6,-6", "1,1", "NaN,1", "0,inf", "1", "a,b", ""] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_elementwise_activations_are_drawn() {
        assert_eq!(activation("relu"), Ok(Activation::Relu));
        assert_eq!(activation("quick-gelu"), Ok(Activation::QuickGelu));
        for bad in ["softmax", "relu-backward", "glu", "nope"] {
            let e = activation(bad).unwrap_err();
            assert!(e.contains(bad) && e.contains("gelu"), "{e}");
        }
    }

    #[test]
    fn a_parameter_no_activation_drawn_takes_is_refused() {
        let params = ActivationParams {
            given: vec![("negative_slope", 0.5)],
        };
        let e = refuse_parameters(&[Activation::Relu], &params).unwrap_err();
        assert!(e.contains("--negative-slope") && e.contains("relu"), "{e}");
        let leaky = params.apply(Activation::LeakyRelu {
            negative_slope: 0.01,
        });
        assert!(refuse_parameters(&[Activation::Relu, leaky], &params).is_ok());
        assert_eq!(
            leaky,
            Activation::LeakyRelu {
                negative_slope: 0.5
            }
        );
    }
}
