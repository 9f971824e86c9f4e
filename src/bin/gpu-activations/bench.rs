//! `gpu-activations bench`: median time, GB/s and the fraction of the copy ceiling (a plain
//! vec4 copy kernel over as many elements, timed in alternation with the op, in the same run on
//! the same adapter), the speedup over the CPU reference, and the cost of moving the batch;
//! `--chart` draws the fractions of the copy ceiling by op family. Every op of the registry
//! brings its own shapes, data and bytes moved ([`crate::registry::Case`]); the linear layers
//! are timed against the FMA peak instead (`bench_linear`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use gpu_activations::npy;
use gpu_activations::{Context, DType, Tensor};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::BackendArg;
use crate::bench_linear::{
    self, LayerBench, LinearCrossEntropyJson, LinearHeadJson, MatmulJson, median,
};
use crate::chart::Target;
use crate::figures::{Bar, BenchBars};
use crate::registry::{self, BoxError, Case, Family, Op, bench_x, elements};
use crate::run::DTypeArg;
use crate::sizes;

#[derive(Args)]
pub struct BenchArgs {
    /// Ops to time (repeatable; command-line names as for `run`, plus `copy`). Default: every
    /// op but the linear layers (name `linear` or `linear-cross-entropy` to time those).
    #[arg(long = "op")]
    ops: Vec<String>,
    /// Shapes as ROWS,COLS or N (repeatable; N,H,K for the linear layers). Default: each op's
    /// performance targets.
    #[arg(long = "shape", value_parser = parse_shape)]
    shapes: Vec<Vec<usize>>,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw each op's fraction of the copy ceiling, grouped by family, to this .svg or .png
    /// file.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Timed runs per op (the median is reported; at least 1).
    #[arg(long, default_value_t = 11, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
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

/// What is benchmarked: an op of the registry, or the copy kernel itself.
enum Item {
    Op(Box<dyn Op>),
    Copy,
}

impl Item {
    fn name(&self) -> String {
        match self {
            Item::Op(op) => op.name(),
            Item::Copy => "copy".into(),
        }
    }

    fn family(&self) -> Family {
        match self {
            Item::Op(op) => op.family(),
            Item::Copy => Family::Copy,
        }
    }

    /// The shapes of the performance targets.
    fn default_shapes(&self) -> Vec<Vec<usize>> {
        match self {
            Item::Op(op) => op.bench_shapes(),
            Item::Copy => vec![vec![16_777_216]],
        }
    }

    /// Its case of `shape` on `ctx`.
    fn case(
        &self,
        ctx: &Context,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Box<dyn Case>, BoxError> {
        match self {
            Item::Copy => Ok(Box::new(CopyCase::new(ctx, shape, dtype)?)),
            Item::Op(op) => op
                .case(ctx, shape, dtype)?
                .ok_or_else(|| format!("{} has no benchmark of its own", op.name()).into()),
        }
    }
}

/// The copy kernel over an op's input (as many elements, in its storage type): the ceiling,
/// timed like any op.
struct CopyCase {
    xt: Tensor,
    out: Tensor,
}

impl CopyCase {
    /// A copy of `x`.
    fn of(x: &Tensor) -> Result<CopyCase, BoxError> {
        Ok(CopyCase {
            xt: x.clone(),
            out: Tensor::zeros_as(x.context(), x.shape(), x.dtype())?,
        })
    }

    fn new(ctx: &Context, shape: &[usize], dtype: DType) -> Result<CopyCase, BoxError> {
        CopyCase::of(&Tensor::from_slice_as(
            ctx,
            &bench_x(elements(shape)),
            shape,
            dtype,
        )?)
    }
}

impl Case for CopyCase {
    fn input(&self) -> &Tensor {
        &self.xt
    }

    fn record(&self) -> Result<(), BoxError> {
        Ok(self.xt.copy_into(&self.out)?)
    }

    fn bytes(&self) -> f64 {
        (2 * self.xt.dtype().size() * self.xt.len()) as f64
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
    /// The fused linear head for any per-token loss (`--op linear-head`): time and memory
    /// against the materialised path.
    linear_head: Vec<LinearHeadJson>,
}

pub fn run(args: &BenchArgs) -> Result<ExitCode, BoxError> {
    let mut layers: Vec<(LayerBench, Vec<Vec<usize>>)> = Vec::new();
    let mut items: Vec<Item> = Vec::new();
    if args.ops.is_empty() {
        items.push(Item::Copy);
        items.extend(
            registry::registry()
                .into_iter()
                .filter(|op| op.layer().is_none())
                .map(Item::Op),
        );
    }
    for name in &args.ops {
        if name == "copy" {
            items.push(Item::Copy);
            continue;
        }
        let op = registry::find(name)?;
        match op.layer() {
            Some(layer) if !layers.iter().any(|(l, _)| *l == layer) => {
                layers.push((layer, op.bench_shapes()))
            }
            Some(_) => {}
            None => items.push(Item::Op(op)),
        }
    }
    let chart = args.chart.as_deref().map(Target::new).transpose()?;
    let reports: Vec<&Path> = args
        .chart
        .iter()
        .chain(&args.json)
        .map(PathBuf::as_path)
        .collect();
    npy::check_targets(&reports)?;
    if chart.is_some() && items.is_empty() {
        return Err(
            "--chart draws the ops' fraction of the copy ceiling, and the linear layers are \
                    measured against the FMA peak and the materialised path: name other ops \
                    too"
            .into(),
        );
    }
    let ctx = args.backend.context()?;
    let dtypes: Vec<DType> = args.dtypes.iter().map(|&d| d.into()).collect();
    let mut jobs: Vec<(usize, Vec<usize>, DType)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let shapes = if args.shapes.is_empty() {
            item.default_shapes()
        } else {
            args.shapes.clone()
        };
        for shape in shapes {
            for &dtype in &dtypes {
                // x, its gradient or targets, the output and the copy's output on the device;
                // x and the gradient made on the host.
                let n = sizes::elements("--shape", &shape)?;
                sizes::check_fits(&ctx, "--shape", n, dtype, 4, 2)?;
                jobs.push((i, shape.clone(), dtype));
            }
        }
    }
    for (layer, shapes) in &mut layers {
        if !args.shapes.is_empty() {
            *shapes = args.shapes.clone();
        }
        for shape in shapes.iter() {
            let [n, h, k] = shape[..] else {
                return Err(format!("the linear layers take --shape N,H,K, not {shape:?}").into());
            };
            // x, W and the gradient of the logits (the layer's; a chunk of it for the fused
            // head), each on the device with its gradient, and made on the host.
            let mut tensors = vec![[n, h], [k, h]];
            if *layer == LayerBench::Linear {
                tensors.push([n, k]);
            }
            for dims in tensors {
                let elements = sizes::elements("--shape", &dims)?;
                sizes::check_fits(&ctx, "--shape", elements, DType::F32, 2, 1)?;
            }
        }
    }

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
    let layer_results = bench_linear::run(&ctx, &layers, args.warmup, args.runs)?;
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
    for (i, shape, dtype) in &jobs {
        let item = &items[*i];
        progress.set_message(format!("{} {dtype} {shape:?}", item.name()));
        let r = measure(&ctx, item, shape, *dtype, args.warmup, args.runs)?;
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
        let n = elements(shape);
        if !transfers.iter().any(|t| t.elements == n) {
            transfers.push(measure_transfer(&ctx, n, args.runs)?);
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
        .max_by_key(|r| elements(&r.shape))
        .map_or(0.0, |r| r.copy_gbs);
    // The chart and the JSON report are staged, then renamed into place together.
    let mut staged = Vec::new();
    if let Some(target) = &chart {
        let several_dtypes = dtypes.len() > 1;
        let bars = jobs
            .iter()
            .zip(&results)
            .map(|((i, shape, dtype), r)| {
                let shape: Vec<String> = shape.iter().map(usize::to_string).collect();
                let mut label = format!("{}, {}", items[*i].name(), shape.join("×"));
                if several_dtypes {
                    label = format!("{label}, {dtype}");
                }
                Bar {
                    family: items[*i].family(),
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
                args.runs
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
            matmul: layer_results.matmul,
            linear_cross_entropy: layer_results.linear_cross_entropy,
            linear_head: layer_results.linear_head,
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

/// Seconds per launch of `launches` runs of `f` recorded back to back, then waited for.
fn timed(
    ctx: &Context,
    launches: usize,
    f: impl Fn() -> Result<(), BoxError>,
) -> Result<f64, BoxError> {
    let t = Instant::now();
    for _ in 0..launches {
        f()?;
    }
    ctx.synchronize()?;
    Ok(t.elapsed().as_secs_f64() / launches as f64)
}

/// Times `item` on `shape` against the copy kernel over as many elements.
fn measure(
    ctx: &Context,
    item: &Item,
    shape: &[usize],
    dtype: DType,
    warmup: usize,
    runs: usize,
) -> Result<ResultJson, BoxError> {
    let case = item.case(ctx, shape, dtype)?;
    let copy = CopyCase::of(case.input())?;
    let (mut op_once, mut copy_once) = (0.0, 0.0);
    for _ in 0..warmup.max(1) {
        op_once = timed(ctx, 1, || case.record())?;
        copy_once = timed(ctx, 1, || copy.record())?;
    }
    let op_launches = launches_per_run(op_once);
    let copy_launches = launches_per_run(copy_once);
    let n = elements(shape);
    let (bytes, copy_bytes) = (case.bytes(), copy.bytes());
    let mut op_times = Vec::with_capacity(runs);
    let mut copy_times = Vec::with_capacity(runs);
    // Each op run is paired with the copy run after it; on a shared machine the pair sees
    // the same conditions, so the median of the pairs' ratios is steadier than a ratio of
    // medians.
    let mut ratios = Vec::with_capacity(runs);
    for _ in 0..runs {
        let op = timed(ctx, op_launches, || case.record())?;
        let c = timed(ctx, copy_launches, || copy.record())?;
        ratios.push((bytes / op) / (copy_bytes / c));
        op_times.push(op);
        copy_times.push(c);
    }
    drop((case, copy));
    let op = median(&mut op_times);
    let c = median(&mut copy_times);
    Ok(ResultJson {
        op: item.name(),
        dtype: dtype.name().into(),
        shape: shape.to_vec(),
        gelems: n as f64 / op / 1e9,
        median_ms: op * 1e3,
        min_ms: op_times.first().copied().unwrap_or(op) * 1e3,
        max_ms: op_times.last().copied().unwrap_or(op) * 1e3,
        gbs: bytes / op / 1e9,
        copy_gbs: copy_bytes / c / 1e9,
        fraction_of_copy: median(&mut ratios),
        cpu_speedup: cpu_seconds(item, shape).unwrap_or(f64::NAN) / op,
        launches: op_launches,
    })
}

/// Time the CPU backend (the f64 reference) takes for the whole batch: measured on the batch
/// cut along dim 0 to about 1M elements, and scaled.
fn cpu_seconds(item: &Item, shape: &[usize]) -> Result<f64, BoxError> {
    let n = elements(shape);
    let per_item = n / shape[0].max(1);
    let mut cut = shape.to_vec();
    cut[0] = ((1 << 20) / per_item.max(1)).clamp(1, shape[0]);
    let take = elements(&cut);
    let case = item.case(&Context::cpu(), &cut, DType::F32)?;
    let t = Instant::now();
    case.record()?;
    Ok(t.elapsed().as_secs_f64() * n as f64 / take.max(1) as f64)
}

/// The least time a timed run takes: it repeats its op back to back until it does, so that
/// recording, submitting and waiting (tens of microseconds) do not hide a fast device's kernels.
const MIN_RUN_SECONDS: f64 = 0.005;

/// Launches per timed run of an op that took `once` seconds alone (at most 1,000).
fn launches_per_run(once: f64) -> usize {
    (MIN_RUN_SECONDS / once).ceil().clamp(1.0, 1000.0) as usize
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
