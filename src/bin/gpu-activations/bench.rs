//! `gpu-activations bench`: median time, GB/s and the fraction of the copy ceiling (a plain
//! vec4 copy kernel over as many elements, timed in alternation with the op, in the same run on
//! the same adapter), the speedup over the CPU reference, and the cost of moving the batch;
//! `--chart` draws the fractions of the copy ceiling by op family.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use gpu_activations::cpu::{self, loss::CrossEntropyTargets};
use gpu_activations::npy;
use gpu_activations::{
    BceOptions, Context, CrossEntropyOptions, DType, Reduction, Targets, Tensor,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::BackendArg;
use crate::bench_linear::{self, LayerBench, LinearCrossEntropyJson, MatmulJson};
use crate::chart::Target;
use crate::figures::{Bar, BenchBars, Family};
use crate::op::{ActivationParams, CliOp, DimFamily};
use crate::run::DTypeArg;

#[derive(Args)]
pub struct BenchArgs {
    /// Ops to time (repeatable; command-line names as for `run`, plus `copy`). Default: every
    /// op family.
    #[arg(long = "op")]
    ops: Vec<String>,
    /// Shapes as ROWS,COLS or N (repeatable). Default: the performance targets' shapes.
    #[arg(long = "shape", value_parser = parse_shape)]
    shapes: Vec<Vec<usize>>,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw each op's fraction of the copy ceiling, grouped by family, to this .svg or .png
    /// file.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Timed runs per op (the median is reported).
    #[arg(long, default_value_t = 11)]
    runs: usize,
    /// Untimed warm-up runs per op.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Storage types to time each op in (repeatable; e.g. `--dtype f32 --dtype f16` puts the
    /// two side by side). Bytes and the copy ceiling are those of that storage type.
    #[arg(long = "dtype", value_enum, default_value = "f32")]
    dtypes: Vec<DTypeArg>,
    #[command(flatten)]
    backend: BackendArg,
}

fn parse_shape(s: &str) -> Result<Vec<usize>, String> {
    let dims: Result<Vec<usize>, _> = s.split(',').map(|d| d.trim().parse::<usize>()).collect();
    match dims {
        Ok(d) if !d.is_empty() && d.iter().all(|&v| v > 0) => Ok(d),
        _ => Err(format!("{s:?} is not a shape like 4096,1024 or 16777216")),
    }
}

type BoxError = Box<dyn std::error::Error>;

/// What is benchmarked: an op of the command line, or the copy kernel itself.
#[derive(Clone, Copy)]
enum Item {
    Op(CliOp),
    Copy,
}

impl Item {
    fn name(self) -> String {
        match self {
            Item::Op(op) => op.to_string(),
            Item::Copy => "copy".into(),
        }
    }

    /// The shapes of the performance targets for this op's family.
    fn default_shapes(self) -> Vec<Vec<usize>> {
        match self {
            Item::Op(CliOp::Softmax { .. } | CliOp::SoftmaxBackward { .. }) => vec![
                vec![4096, 1024],
                vec![65536, 64],
                vec![64, 65536],
                vec![16, 1_048_576],
            ],
            Item::Op(CliOp::CrossEntropy | CliOp::NllLoss) => {
                vec![vec![4096, 1000], vec![512, 32000]]
            }
            // The segmentation case: 21 classes at dim 1 of a batch of 128 × 128 maps.
            Item::Op(CliOp::SoftmaxDim { .. } | CliOp::CrossEntropyDim1 | CliOp::NllLossDim1) => {
                vec![vec![32, 21, 128, 128]]
            }
            Item::Op(CliOp::Gated { .. }) => vec![vec![4096, 4096]],
            Item::Op(CliOp::Prelu { .. }) => vec![vec![64, 256, 1024]],
            _ => vec![vec![16_777_216]],
        }
    }
}

#[derive(Serialize)]
struct AdapterJson {
    name: String,
    backend: String,
    device_type: String,
    driver: String,
}

#[derive(Serialize)]
struct ResultJson {
    op: String,
    /// Storage type (`float32`, `float16`, `bfloat16`).
    dtype: String,
    shape: Vec<usize>,
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
    gbs: f64,
    /// Elements per second (10⁹), whatever their storage type.
    gelems: f64,
    /// GB/s of the copy kernel over the same number of elements of the same storage type,
    /// timed in alternation.
    copy_gbs: f64,
    fraction_of_copy: f64,
    cpu_speedup: f64,
    /// Launches of the op per timed run (`median_ms` is per launch).
    launches: usize,
}

#[derive(Serialize)]
struct TransferJson {
    elements: usize,
    upload_ms: f64,
    upload_gbs: f64,
    readback_ms: f64,
    readback_gbs: f64,
}

#[derive(Serialize)]
struct BenchJson {
    adapter: AdapterJson,
    /// The copy ceiling: the copy kernel's median GB/s on the largest batch of the run.
    copy_gbs: f64,
    runs: usize,
    results: Vec<ResultJson>,
    transfers: Vec<TransferJson>,
    /// The linear layer (`--op linear`) against the adapter's FMA peak.
    matmul: Vec<MatmulJson>,
    /// The fused linear cross-entropy (`--op linear-cross-entropy`): time and memory against
    /// the materialised path.
    linear_cross_entropy: Vec<LinearCrossEntropyJson>,
}

pub fn run(args: &BenchArgs) -> Result<ExitCode, BoxError> {
    let params = ActivationParams::default();
    let layers: Vec<LayerBench> = args
        .ops
        .iter()
        .filter_map(|o| LayerBench::parse(o))
        .collect();
    let ops: Vec<&String> = args
        .ops
        .iter()
        .filter(|o| LayerBench::parse(o).is_none())
        .collect();
    let chart = args.chart.as_deref().map(Target::new).transpose()?;
    let reports: Vec<&Path> = args
        .chart
        .iter()
        .chain(&args.json)
        .map(PathBuf::as_path)
        .collect();
    npy::check_targets(&reports)?;
    if chart.is_some() && !args.ops.is_empty() && ops.is_empty() {
        return Err(
            "--chart draws the ops' fraction of the copy ceiling, and the linear layers are \
                    measured against the FMA peak and the materialised path: name other ops \
                    too"
            .into(),
        );
    }
    let ctx = args.backend.context()?;
    let items: Vec<Item> = if args.ops.is_empty() {
        let mut all: Vec<Item> = CliOp::all(params).into_iter().map(Item::Op).collect();
        all.insert(0, Item::Copy);
        all
    } else {
        ops.iter()
            .map(|name| match name.as_str() {
                "copy" => Ok(Item::Copy),
                other => CliOp::parse(other, params).map(Item::Op),
            })
            .collect::<Result<_, String>>()?
    };
    let dtypes: Vec<DType> = args.dtypes.iter().map(|&d| d.into()).collect();
    let jobs: Vec<(Item, Vec<usize>, DType)> = items
        .iter()
        .flat_map(|&item| {
            let shapes = if args.shapes.is_empty() {
                item.default_shapes()
            } else {
                args.shapes.clone()
            };
            let dtypes = &dtypes;
            shapes
                .into_iter()
                .flat_map(move |s| dtypes.iter().map(move |&d| (item, s.clone(), d)))
        })
        .collect();

    let info = ctx.adapter_info();
    say!("adapter: {info}");
    say!(
        "method:  median of {} runs after {} warm-up runs, data resident on the device; a run \
         repeats the op back to back for at least 5 ms (times are per launch), and each is \
         paired with a run of the copy kernel over as many elements; `of copy` is the median of \
         the pairs' ratios",
        args.runs,
        args.warmup
    );
    let progress = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(jobs.len() as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let mut results = Vec::new();
    let mut transfers: Vec<TransferJson> = Vec::new();
    let (matmul, linear_cross_entropy) =
        bench_linear::run(&ctx, &layers, &args.shapes, args.warmup, args.runs.max(1))?;
    if !jobs.is_empty() {
        say!();
        say!(
            "{:<24} {:<9} {:<16} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "op",
            "dtype",
            "shape",
            "median ms",
            "GB/s",
            "Gelem/s",
            "copy GB/s",
            "of copy",
            "vs CPU"
        );
    }
    for (item, shape, dtype) in &jobs {
        progress.set_message(format!("{} {dtype} {shape:?}", item.name()));
        let bench = Bench::new(&ctx, *item, shape, *dtype)?;
        let r = bench.measure(args.warmup, args.runs.max(1))?;
        say!(
            "{:<24} {:<9} {:<16} {:>10.3} {:>9.2} {:>9.2} {:>9.2} {:>8.0}% {:>8.1}x",
            r.op,
            r.dtype,
            format!("{:?}", r.shape),
            r.median_ms,
            r.gbs,
            r.gelems,
            r.copy_gbs,
            100.0 * r.fraction_of_copy,
            r.cpu_speedup
        );
        let n: usize = shape.iter().product();
        if !transfers.iter().any(|t| t.elements == n) {
            transfers.push(measure_transfer(&ctx, n, args.runs.max(1))?);
        }
        results.push(r);
        progress.inc(1);
    }
    progress.finish_and_clear();

    if !transfers.is_empty() {
        say!();
        say!("transfers (host ⇄ device, one f32 tensor):");
        say!(
            "{:>12} {:>11} {:>11} {:>13} {:>13}",
            "elements",
            "upload ms",
            "upload GB/s",
            "read-back ms",
            "read-back GB/s"
        );
    }
    for t in &transfers {
        say!(
            "{:>12} {:>11.2} {:>11.2} {:>13.2} {:>13.2}",
            t.elements,
            t.upload_ms,
            t.upload_gbs,
            t.readback_ms,
            t.readback_gbs
        );
    }
    let ceiling = results
        .iter()
        .max_by_key(|r| r.shape.iter().product::<usize>())
        .map_or(0.0, |r| r.copy_gbs);
    // The chart and the JSON report are staged, then renamed into place together.
    let mut staged = Vec::new();
    if let Some(target) = &chart {
        let several_dtypes = dtypes.len() > 1;
        let bars = jobs
            .iter()
            .zip(&results)
            .map(|((item, shape, dtype), r)| {
                let shape: Vec<String> = shape.iter().map(usize::to_string).collect();
                let mut label = format!("{}, {}", item.name(), shape.join("×"));
                if several_dtypes {
                    label = format!("{label}, {dtype}");
                }
                let op = match item {
                    Item::Op(op) => Some(*op),
                    Item::Copy => None,
                };
                Bar {
                    family: Family::of(op),
                    label,
                    fraction: r.fraction_of_copy,
                }
            })
            .collect();
        staged.push(target.stage(&BenchBars::new(
            format!(
                "Fraction of the copy ceiling on {} ({})",
                info.name, info.backend
            ),
            format!(
                "each bar: the op's GB/s (inputs read once, outputs written once) over the copy \
                 kernel's on as many elements, median of {} paired runs",
                args.runs.max(1)
            ),
            bars,
        ))?);
    }
    if let Some(path) = &args.json {
        let doc = BenchJson {
            adapter: AdapterJson {
                name: info.name.clone(),
                backend: info.backend.to_string(),
                device_type: format!("{:?}", info.device_type),
                driver: format!("{} {}", info.driver, info.driver_info)
                    .trim()
                    .to_string(),
            },
            copy_gbs: ceiling,
            runs: args.runs,
            results,
            transfers,
            matmul,
            linear_cross_entropy,
        };
        staged.push(npy::stage_bytes(
            path,
            serde_json::to_string_pretty(&doc)?.as_bytes(),
        )?);
    }
    npy::commit_all(staged)?;
    if let Some(target) = &chart {
        say!("wrote {}", target.path().display());
    }
    Ok(ExitCode::SUCCESS)
}

/// An op ready to run repeatedly on resident data.
struct Bench<'a> {
    ctx: &'a Context,
    item: Item,
    shape: Vec<usize>,
    x: Vec<f32>,
    xt: Tensor,
    gt: Tensor,
    out: Tensor,
    copy_dst: Tensor,
    targets: Vec<i64>,
    /// The saved output, for softmax backward.
    yt: Option<Tensor>,
    /// The upstream gradient of a gated op (its output's shape), or PReLU's slopes.
    aux: Option<Tensor>,
    dtype: DType,
}

impl<'a> Bench<'a> {
    fn new(
        ctx: &'a Context,
        item: Item,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Bench<'a>, BoxError> {
        let n: usize = shape.iter().product();
        let cols = *shape.last().unwrap_or(&1);
        let rows = n / cols.max(1);
        let x: Vec<f32> = (0..n)
            .map(|i| {
                ((i.wrapping_mul(2_654_435_761) % 1_000_003) as f32 / 1_000_003.0 - 0.5) * 16.0
            })
            .collect();
        let g: Vec<f32> = (0..n)
            .map(|i| ((i.wrapping_mul(40_503) % 65_537) as f32 / 65_537.0 - 0.5) * 2.0)
            .collect();
        let xt = Tensor::from_slice_as(ctx, &x, shape, dtype)?;
        let gt = match item {
            // BCE targets must be probabilities.
            Item::Op(CliOp::BceWithLogits) => {
                let y: Vec<f32> = g.iter().map(|v| v.abs()).collect();
                Tensor::from_slice_as(ctx, &y, shape, dtype)?
            }
            _ => Tensor::from_slice_as(ctx, &g, shape, dtype)?,
        };
        let yt = match item {
            Item::Op(CliOp::SoftmaxBackward { log }) => Some(if log {
                xt.log_softmax()?
            } else {
                xt.softmax()?
            }),
            Item::Op(CliOp::SoftmaxDim {
                family,
                backward: true,
            }) => Some(dim_forward(&xt, family)?),
            _ => None,
        };
        let aux = match item {
            Item::Op(CliOp::Gated { backward: true, .. }) => {
                let mut half = shape.to_vec();
                if let Some(last) = half.last_mut() {
                    *last /= 2;
                }
                Some(Tensor::from_slice_as(ctx, &g[..n / 2], &half, dtype)?)
            }
            Item::Op(CliOp::Prelu { .. }) => {
                let channels = if shape.len() >= 2 { shape[1] } else { 1 };
                let w: Vec<f32> = (0..channels)
                    .map(|c| 0.05 + (c % 7) as f32 * 0.05)
                    .collect();
                Some(Tensor::from_slice_as(ctx, &w, &[channels], dtype)?)
            }
            _ => None,
        };
        // One class index per row, or per [N, d1, …, dk] position in PyTorch's layout.
        let (positions, classes) = match item {
            Item::Op(CliOp::CrossEntropyDim1 | CliOp::NllLossDim1) if shape.len() >= 2 => {
                (n / shape[1].max(1), shape[1])
            }
            _ => (rows, cols),
        };
        Ok(Bench {
            ctx,
            item,
            shape: shape.to_vec(),
            out: Tensor::zeros_as(ctx, shape, dtype)?,
            copy_dst: Tensor::zeros_as(ctx, shape, dtype)?,
            targets: (0..positions)
                .map(|r| (r * 7919 % classes.max(1)) as i64)
                .collect(),
            x,
            xt,
            gt,
            yt,
            aux,
            dtype,
        })
    }

    /// Bytes the op must move at least: each input read once, each output written once, in
    /// the storage type.
    fn bytes(&self) -> f64 {
        let size = self.dtype.size();
        let n: usize = self.shape.iter().product();
        let rows = n / self.shape.last().copied().unwrap_or(1).max(1);
        let streams = match self.item {
            Item::Copy | Item::Op(CliOp::Forward(_) | CliOp::Softmax { .. }) => 2,
            Item::Op(CliOp::Backward(_) | CliOp::SoftmaxBackward { .. } | CliOp::BceWithLogits) => {
                3
            }
            Item::Op(CliOp::CrossEntropy) => return (2 * size * n + 8 * rows) as f64,
            Item::Op(CliOp::CrossEntropyDim1) => {
                return (2 * size * n + 8 * self.targets.len()) as f64;
            }
            // The gradient written whole (its zeros too); of the input only each position's
            // target log-probability is read, with the target.
            Item::Op(CliOp::NllLoss | CliOp::NllLossDim1) => {
                return (size * n + (8 + size) * self.targets.len()) as f64;
            }
            // x read, half of it written; backward: x and g (half of x) read, dx written.
            Item::Op(CliOp::Gated {
                backward: false, ..
            }) => return (size * 3 * n / 2) as f64,
            Item::Op(CliOp::Gated { backward: true, .. }) => return (size * 5 * n / 2) as f64,
            Item::Op(
                CliOp::Prelu { backward: false }
                | CliOp::SoftmaxDim {
                    backward: false, ..
                },
            ) => 2,
            Item::Op(
                CliOp::Prelu { backward: true } | CliOp::SoftmaxDim { backward: true, .. },
            ) => 3,
        };
        (size * streams * n) as f64
    }

    /// Records one run of the op.
    fn record(&self) -> Result<(), BoxError> {
        match self.item {
            Item::Copy => self.xt.copy_into(&self.out)?,
            Item::Op(CliOp::Forward(a)) => self.xt.activation_into(a, &self.out)?,
            Item::Op(CliOp::Backward(a)) => {
                self.xt.activation_backward_into(a, &self.gt, &self.out)?
            }
            Item::Op(CliOp::Softmax { log: false }) => self.xt.softmax_into(&self.out)?,
            Item::Op(CliOp::Softmax { log: true }) => self.xt.log_softmax_into(&self.out)?,
            Item::Op(CliOp::SoftmaxBackward { log }) => {
                let y = self.yt.as_ref().ok_or("no saved output")?;
                if log {
                    y.log_softmax_backward_into(&self.gt, &self.out)?;
                } else {
                    y.softmax_backward_into(&self.gt, &self.out)?;
                }
            }
            Item::Op(CliOp::CrossEntropy) => {
                self.xt.cross_entropy(
                    Targets::Indices(&self.targets),
                    &CrossEntropyOptions::default(),
                )?;
            }
            Item::Op(CliOp::BceWithLogits) => {
                self.xt.bce_with_logits(&self.gt, &BceOptions::default())?;
            }
            Item::Op(op) => {
                run_on(
                    op,
                    &self.xt,
                    &self.gt,
                    self.yt.as_ref(),
                    self.aux.as_ref(),
                    &self.targets,
                )?;
            }
        }
        Ok(())
    }

    /// Seconds per launch of `launches` runs of `f` recorded back to back, then waited for.
    fn timed(
        &self,
        launches: usize,
        f: impl Fn() -> Result<(), BoxError>,
    ) -> Result<f64, BoxError> {
        let t = Instant::now();
        for _ in 0..launches {
            f()?;
        }
        self.ctx.synchronize()?;
        Ok(t.elapsed().as_secs_f64() / launches as f64)
    }

    fn copy(&self) -> Result<(), BoxError> {
        Ok(self.xt.copy_into(&self.copy_dst)?)
    }

    fn measure(&self, warmup: usize, runs: usize) -> Result<ResultJson, BoxError> {
        let (mut op_once, mut copy_once) = (0.0, 0.0);
        for _ in 0..warmup.max(1) {
            op_once = self.timed(1, || self.record())?;
            copy_once = self.timed(1, || self.copy())?;
        }
        let op_launches = launches_per_run(op_once);
        let copy_launches = launches_per_run(copy_once);
        let n: usize = self.shape.iter().product();
        let copy_bytes = (2 * self.dtype.size() * n) as f64;
        let mut op_times = Vec::with_capacity(runs);
        let mut copy_times = Vec::with_capacity(runs);
        // Each op run is paired with the copy run after it; on a shared machine the pair sees
        // the same conditions, so the median of the pairs' ratios is steadier than a ratio of
        // medians.
        let mut ratios = Vec::with_capacity(runs);
        for _ in 0..runs {
            let op = self.timed(op_launches, || self.record())?;
            let copy = self.timed(copy_launches, || self.copy())?;
            ratios.push((self.bytes() / op) / (copy_bytes / copy));
            op_times.push(op);
            copy_times.push(copy);
        }
        let op = median(&mut op_times);
        let copy = median(&mut copy_times);
        let gbs = self.bytes() / op / 1e9;
        let copy_gbs = copy_bytes / copy / 1e9;
        Ok(ResultJson {
            op: self.item.name(),
            dtype: self.dtype.name().into(),
            shape: self.shape.clone(),
            gelems: n as f64 / op / 1e9,
            median_ms: op * 1e3,
            min_ms: op_times.first().copied().unwrap_or(op) * 1e3,
            max_ms: op_times.last().copied().unwrap_or(op) * 1e3,
            gbs,
            copy_gbs,
            fraction_of_copy: median(&mut ratios),
            cpu_speedup: self.cpu_seconds() / op,
            launches: op_launches,
        })
    }

    /// Time the CPU reference takes for the whole batch, measured on up to ~1M elements of
    /// whole rows and scaled.
    fn cpu_seconds(&self) -> f64 {
        let n: usize = self.shape.iter().product();
        let cols = self.shape.last().copied().unwrap_or(1).max(1);
        let rows = (1 << 20) / cols;
        let take = (rows.max(1) * cols).min(n);
        let x = &self.x[..take];
        let g: Vec<f32> = x.iter().map(|v| v * 0.1).collect();
        let t = Instant::now();
        match self.item {
            Item::Copy => {
                std::hint::black_box(x.to_vec());
            }
            Item::Op(CliOp::Forward(a)) => {
                std::hint::black_box(cpu::activation::forward_slice(a, x));
            }
            Item::Op(CliOp::Backward(a)) => {
                std::hint::black_box(cpu::activation::backward_slice(a, x, &g));
            }
            Item::Op(CliOp::Softmax { log }) => {
                std::hint::black_box(cpu::softmax::forward(x, cols, log));
            }
            Item::Op(CliOp::SoftmaxBackward { log }) => {
                std::hint::black_box(cpu::softmax::backward(x, &g, cols, log));
            }
            Item::Op(CliOp::CrossEntropy) => {
                let z: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
                let t = &self.targets[..take / cols];
                std::hint::black_box(cpu::loss::cross_entropy(
                    &z,
                    cols,
                    CrossEntropyTargets::Indices(t),
                    None,
                    Reduction::Mean,
                    -100,
                    0.0,
                ));
            }
            Item::Op(CliOp::BceWithLogits) => {
                let z: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
                let y: Vec<f64> = g.iter().map(|&v| f64::from(v.abs())).collect();
                std::hint::black_box(cpu::loss::bce_with_logits(
                    &z,
                    &y,
                    None,
                    None,
                    Reduction::Mean,
                ));
            }
            Item::Op(op) => return self.cpu_backend_seconds(op).unwrap_or(f64::NAN),
        }
        t.elapsed().as_secs_f64() * n as f64 / take.max(1) as f64
    }

    /// Time the CPU backend (the f64 reference) takes for the op on the batch, measured on a
    /// batch cut along dim 0 to about 1M elements and scaled.
    fn cpu_backend_seconds(&self, op: CliOp) -> Result<f64, BoxError> {
        let n: usize = self.shape.iter().product();
        let per_item = n / self.shape[0].max(1);
        let items = ((1 << 20) / per_item.max(1)).clamp(1, self.shape[0]);
        let mut shape = self.shape.clone();
        shape[0] = items;
        let take = items * per_item;
        let cpu = Context::cpu();
        let tensor = |t: &Tensor| -> Result<Tensor, BoxError> {
            let v = t.to_vec()?;
            let mut s = t.shape().to_vec();
            if s.len() == self.shape.len() && s.first() == self.shape.first() {
                s[0] = items;
                let len: usize = s.iter().product();
                return Ok(Tensor::from_slice(&cpu, &v[..len], &s)?);
            }
            Ok(Tensor::from_slice(&cpu, &v, &s)?)
        };
        let x = Tensor::from_slice(&cpu, &self.x[..take], &shape)?;
        let g = tensor(&self.gt)?;
        let y = self.yt.as_ref().map(tensor).transpose()?;
        let aux = self.aux.as_ref().map(tensor).transpose()?;
        let targets = &self.targets[..self.targets.len() * take / n.max(1)];
        let t = Instant::now();
        run_on(op, &x, &g, y.as_ref(), aux.as_ref(), targets)?;
        Ok(t.elapsed().as_secs_f64() * n as f64 / take.max(1) as f64)
    }
}

/// The least time a timed run takes: it repeats its op back to back until it does, so that
/// recording, submitting and waiting (tens of microseconds) do not hide a fast device's kernels.
const MIN_RUN_SECONDS: f64 = 0.005;

/// Launches per timed run of an op that took `once` seconds alone (at most 1,000).
fn launches_per_run(once: f64) -> usize {
    (MIN_RUN_SECONDS / once).ceil().clamp(1.0, 1000.0) as usize
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Upload (from the host into a device tensor) and read-back of `n` floats.
fn measure_transfer(ctx: &Context, n: usize, runs: usize) -> Result<TransferJson, BoxError> {
    let host = vec![0.5f32; n];
    // A host buffer reused for every read-back, so that first-touch page faults of a fresh
    // allocation are not counted as transfer time.
    let mut back = vec![0.0f32; n];
    let mut up = Vec::new();
    let mut down = Vec::new();
    for _ in 0..runs.min(5) {
        let t = Instant::now();
        let tensor = Tensor::from_slice(ctx, &host, &[n])?;
        ctx.synchronize()?;
        up.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        tensor.read_into(&mut back)?;
        down.push(t.elapsed().as_secs_f64());
    }
    let (u, d) = (median(&mut up), median(&mut down));
    let bytes = (4 * n) as f64;
    Ok(TransferJson {
        elements: n,
        upload_ms: u * 1e3,
        upload_gbs: bytes / u / 1e9,
        readback_ms: d * 1e3,
        readback_gbs: bytes / d / 1e9,
    })
}

/// The softmax family's forward along dim 1 (the last dim of a tensor of rank 1).
fn dim_forward(x: &Tensor, family: DimFamily) -> gpu_activations::Result<Tensor> {
    let dim = bench_dim(x);
    match family {
        DimFamily::Softmax => x.softmax_dim(dim),
        DimFamily::LogSoftmax => x.log_softmax_dim(dim),
        DimFamily::Softmin => x.softmin(dim),
    }
}

fn bench_dim(x: &Tensor) -> isize {
    if x.shape().len() >= 2 { 1 } else { -1 }
}

/// Runs one of the ops without an `_into` form (gated, PReLU, the softmax family along a dim,
/// the dim-1 losses) on `x`, with `g` its upstream gradient, `y` a saved output and `aux` a
/// gated op's gradient or PReLU's slopes.
fn run_on(
    op: CliOp,
    x: &Tensor,
    g: &Tensor,
    y: Option<&Tensor>,
    aux: Option<&Tensor>,
    targets: &[i64],
) -> Result<(), BoxError> {
    let aux = || aux.ok_or("no gradient or slopes prepared");
    let options = CrossEntropyOptions::default();
    match op {
        CliOp::Gated {
            gate,
            backward: false,
        } => drop(x.gated(gate)?),
        CliOp::Gated {
            gate,
            backward: true,
        } => drop(x.gated_backward(gate, aux()?)?),
        CliOp::Prelu { backward: false } => drop(x.prelu(aux()?)?),
        CliOp::Prelu { backward: true } => drop(x.prelu_backward(aux()?, g)?),
        CliOp::SoftmaxDim {
            family,
            backward: false,
        } => drop(dim_forward(x, family)?),
        CliOp::SoftmaxDim {
            family,
            backward: true,
        } => {
            let y = y.ok_or("no saved output")?;
            let dim = bench_dim(y);
            drop(match family {
                DimFamily::Softmax => y.softmax_dim_backward(dim, g)?,
                DimFamily::LogSoftmax => y.log_softmax_dim_backward(dim, g)?,
                DimFamily::Softmin => y.softmin_backward(dim, g)?,
            })
        }
        CliOp::CrossEntropyDim1 => drop(x.cross_entropy_dim1(Targets::Indices(targets), &options)?),
        CliOp::NllLoss => drop(x.nll_loss(Targets::Indices(targets), &options)?),
        CliOp::NllLossDim1 => drop(x.nll_loss_dim1(Targets::Indices(targets), &options)?),
        other => return Err(format!("{other} has its own launch in Bench::record").into()),
    }
    Ok(())
}
