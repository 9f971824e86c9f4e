//! `gpu-activations bench --op linear`, `--op linear-cross-entropy` and `--op linear-head`: the
//! linear layer against the adapter's FMA peak, the fused linear cross-entropy against the
//! materialised path (linear, cross-entropy, linear backward), and the fused linear head for any
//! per-token loss against its materialised path (linear, head statistics, their backward,
//! linear backward), in time and in peak device memory.

use std::time::Instant;

use gpu_activations::{Context, CrossEntropyOptions, HeadOptions, HeadStats, Targets, Tensor};
use serde::Serialize;

type BoxError = Box<dyn std::error::Error>;

/// A layer benchmark (the registry's linear entries name theirs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerBench {
    Linear,
    LinearCrossEntropy,
    LinearHead,
}

/// What the layer benchmarks measured, by layer.
#[derive(Default)]
pub struct LayerResults {
    pub matmul: Vec<MatmulJson>,
    pub linear_cross_entropy: Vec<LinearCrossEntropyJson>,
    pub linear_head: Vec<LinearHeadJson>,
}

#[derive(Serialize)]
pub struct LinearHeadJson {
    /// `[N, H, K]`: x `[N, H]`, W `[K, H]`, K classes.
    shape: Vec<usize>,
    /// The forward: `linear_head` (the statistics), and the materialised path (`linear` with
    /// the bias, then `head_stats` on the logits), timed in alternation: medians of each and
    /// of the pairs' ratios (materialised over fused: above 1, the fused path is faster).
    fused_forward_ms: f64,
    materialised_forward_ms: Option<f64>,
    forward_speedup: Option<f64>,
    /// A training step: the forward and `linear_head_backward` (the logits formed again),
    /// against `linear`, `head_stats`, `head_stats_backward` and `linear_backward` on the
    /// logits held between them.
    fused_step_ms: f64,
    materialised_step_ms: Option<f64>,
    step_speedup: Option<f64>,
    /// The step in one pass over the chunks (`linear_head_step`: the logits formed once, the
    /// upstream gradients formed per chunk from its statistics), and materialised over it.
    one_pass_step_ms: f64,
    one_pass_speedup: Option<f64>,
    /// Peak device bytes during one step (forward and backward calls), the resident inputs
    /// included, and during one `linear_head_step`.
    fused_peak_bytes: u64,
    one_pass_peak_bytes: u64,
    /// x + W + b and their gradients, the per-row outputs (the statistics, the upstream
    /// gradients, the class indices) and 64 MiB: what the fused step may hold at its peak.
    budget_bytes: u64,
    materialised_peak_bytes: Option<u64>,
    /// Why the materialised path did not run (e.g. its logits exceed one storage binding).
    materialised_error: Option<String>,
}

/// The median of `v` (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[derive(Serialize)]
pub struct MatmulJson {
    /// `[N, H, K]`: x `[N, H]`, W `[K, H]`.
    shape: Vec<usize>,
    forward_ms: f64,
    forward_gflops: f64,
    /// dx and dW (4·N·H·K flops) and db.
    backward_ms: f64,
    backward_gflops: f64,
    /// The FMA loop's GFLOP/s, timed in alternation with the layer.
    peak_gflops: f64,
    forward_fraction_of_peak: f64,
    backward_fraction_of_peak: f64,
}

#[derive(Serialize)]
pub struct LinearCrossEntropyJson {
    /// `[N, H, K]`: x `[N, H]`, W `[K, H]`, K classes.
    shape: Vec<usize>,
    /// One call: the loss and dx, dW, db.
    fused_ms: f64,
    /// Peak device bytes during the call, the resident inputs included.
    fused_peak_bytes: u64,
    /// x + W + b and their gradients, + 64 MiB: what the fused path may hold at its peak.
    budget_bytes: u64,
    /// linear, cross-entropy and the linear backward (None where it did not run).
    materialised_ms: Option<f64>,
    materialised_peak_bytes: Option<u64>,
    /// Why the materialised path did not run (e.g. its logits exceed one storage binding).
    materialised_error: Option<String>,
}

const MIB: f64 = (1u64 << 20) as f64;

/// The most rounds of the FMA probe: its invocations loop once per round, and llvmpipe ends an
/// invocation after 65,535 loop iterations (the probe would then count flops never done).
const MAX_PROBE_ROUNDS: u32 = 1 << 15;

/// Runs the layer benchmarks asked for, printing a table for each.
pub fn run(
    ctx: &Context,
    layers: &[(LayerBench, Vec<Vec<usize>>)],
    warmup: usize,
    runs: usize,
) -> Result<LayerResults, BoxError> {
    let mut results = LayerResults::default();
    let (matmul, fused) = (&mut results.matmul, &mut results.linear_cross_entropy);
    for (layer, shapes) in layers {
        let (layer, shapes) = (*layer, shapes.clone());
        say!();
        match layer {
            LayerBench::Linear => say!(
                "{:<20} {:>11} {:>9} {:>12} {:>9} {:>10} {:>9} {:>9}",
                "linear [N, H, K]",
                "forward ms",
                "GFLOP/s",
                "backward ms",
                "GFLOP/s",
                "peak",
                "fwd/peak",
                "bwd/peak"
            ),
            LayerBench::LinearCrossEntropy => say!(
                "{:<30} {:>10} {:>14} {:>11} {:>17} {:>20}",
                "linear-cross-entropy [N, H, K]",
                "fused ms",
                "fused peak MiB",
                "budget MiB",
                "materialised ms",
                "materialised peak MiB"
            ),
            LayerBench::LinearHead => say!(
                "linear-head [N, H, K]: the fused head against the materialised path (× is \
                 materialised over fused, the median of alternated pairs)"
            ),
        }
        for shape in shapes {
            let [n, h, k] = shape[..] else {
                return Err(format!("the linear layers take shapes N,H,K, not {shape:?}").into());
            };
            match layer {
                LayerBench::Linear => {
                    let m = measure_linear(ctx, (n, h, k), warmup, runs)?;
                    say!(
                        "{:<20} {:>11.3} {:>9.1} {:>12.3} {:>9.1} {:>10.1} {:>8.0}% {:>8.0}%",
                        format!("{shape:?}"),
                        m.forward_ms,
                        m.forward_gflops,
                        m.backward_ms,
                        m.backward_gflops,
                        m.peak_gflops,
                        100.0 * m.forward_fraction_of_peak,
                        100.0 * m.backward_fraction_of_peak
                    );
                    matmul.push(m);
                }
                LayerBench::LinearCrossEntropy => {
                    let m = measure_linear_cross_entropy(ctx, (n, h, k), warmup, runs)?;
                    let or_dash =
                        |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.1}"));
                    say!(
                        "{:<30} {:>10.1} {:>14.1} {:>11.1} {:>17} {:>20}",
                        format!("{shape:?}"),
                        m.fused_ms,
                        m.fused_peak_bytes as f64 / MIB,
                        m.budget_bytes as f64 / MIB,
                        or_dash(m.materialised_ms),
                        or_dash(m.materialised_peak_bytes.map(|b| b as f64 / MIB)),
                    );
                    if let Some(e) = &m.materialised_error {
                        say!("  materialised path not run: {e}");
                    }
                    fused.push(m);
                }
                LayerBench::LinearHead => {
                    let m = measure_linear_head(ctx, (n, h, k), warmup, runs)?;
                    let or_dash = |v: Option<f64>, digits: usize| {
                        v.map_or("—".to_string(), |v| format!("{v:.digits$}"))
                    };
                    let mib = |b: u64| b as f64 / MIB;
                    say!("{shape:?}");
                    say!(
                        "  forward  fused {:.1} ms, materialised {} ms (× {})",
                        m.fused_forward_ms,
                        or_dash(m.materialised_forward_ms, 1),
                        or_dash(m.forward_speedup, 2)
                    );
                    say!(
                        "  step     fused {:.1} ms (forward and backward calls), {:.1} ms (one \
                         pass); materialised {} ms (× {}, × {})",
                        m.fused_step_ms,
                        m.one_pass_step_ms,
                        or_dash(m.materialised_step_ms, 1),
                        or_dash(m.step_speedup, 2),
                        or_dash(m.one_pass_speedup, 2)
                    );
                    say!(
                        "  memory   peak {:.1} MiB (two calls), {:.1} MiB (one pass); budget \
                         {:.1} MiB; materialised {} MiB",
                        mib(m.fused_peak_bytes),
                        mib(m.one_pass_peak_bytes),
                        mib(m.budget_bytes),
                        or_dash(m.materialised_peak_bytes.map(mib), 1)
                    );
                    if let Some(e) = &m.materialised_error {
                        say!("  materialised path not run: {e}");
                    }
                    results.linear_head.push(m);
                }
            }
        }
    }
    Ok(results)
}

/// The fused linear cross-entropy against linear + cross-entropy + linear backward: the
/// median time of `runs` calls each (in alternation), and the peak device memory of one call,
/// counted from a trimmed pool with the inputs resident.
fn measure_linear_cross_entropy(
    ctx: &Context,
    (n, h, k): (usize, usize, usize),
    warmup: usize,
    runs: usize,
) -> Result<LinearCrossEntropyJson, BoxError> {
    let (x, w, labels) = head_inputs(n, h, k);
    let xt = Tensor::from_slice(ctx, &x, &[n, h])?;
    let wt = Tensor::from_slice(ctx, &w, &[k, h])?;
    let bt = Tensor::from_slice(ctx, &vec![0.0; k], &[k])?;
    drop((x, w));
    let (options, head) = (CrossEntropyOptions::default(), HeadOptions::default());
    let fused = || -> Result<(), BoxError> {
        let r =
            xt.linear_cross_entropy(&wt, Some(&bt), Targets::Indices(&labels), &options, &head)?;
        drop(r);
        Ok(())
    };
    let materialised = || -> Result<(), BoxError> {
        let logits = xt.linear(&wt, Some(&bt))?;
        let r = logits.cross_entropy_in_place(Targets::Indices(&labels), &options)?;
        let grads = xt.linear_backward(&wt, &logits)?;
        drop((r, grads));
        Ok(())
    };
    let (peak, timed) = (
        |f: Call<'_>| peak_of(ctx, f),
        |f: Call<'_>| seconds_of(ctx, f),
    );
    let (first_fused, fused_peak) = peak(&fused)?;
    let (materialised_peak, materialised_error) = match peak(&materialised) {
        Ok((_, bytes)) => (Some(bytes), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let (mut fused_times, mut materialised_times) = (vec![first_fused], Vec::new());
    for i in 0..warmup + runs {
        let f = timed(&fused)?;
        let m = if materialised_error.is_none() {
            Some(timed(&materialised)?)
        } else {
            None
        };
        if i >= warmup {
            fused_times.push(f);
            materialised_times.extend(m);
        }
    }
    if fused_times.len() > 1 {
        fused_times.remove(0);
    }
    let tensors = 2 * (n * h + k * h + k) as u64;
    Ok(LinearCrossEntropyJson {
        shape: vec![n, h, k],
        fused_ms: median(&mut fused_times) * 1e3,
        fused_peak_bytes: fused_peak,
        budget_bytes: 4 * tensors + (64 << 20),
        materialised_ms: (!materialised_times.is_empty())
            .then(|| median(&mut materialised_times) * 1e3),
        materialised_peak_bytes: materialised_peak,
        materialised_error,
    })
}

/// The fused linear head against the materialised path: a forward (the statistics) and a
/// step (forward and backward) of each, in alternation (`runs` pairs after `warmup`), and the
/// peak device memory of one step of each, counted from a trimmed pool with the inputs
/// resident.
fn measure_linear_head(
    ctx: &Context,
    (n, h, k): (usize, usize, usize),
    warmup: usize,
    runs: usize,
) -> Result<LinearHeadJson, BoxError> {
    let (x, w, labels) = head_inputs(n, h, k);
    let upstream: Vec<f32> = (0..n)
        .map(|i| ((i * 31 % 101) as f32 / 101.0) - 0.5)
        .collect();
    let xt = Tensor::from_slice(ctx, &x, &[n, h])?;
    let wt = Tensor::from_slice(ctx, &w, &[k, h])?;
    let bt = Tensor::from_slice(ctx, &vec![0.0; k], &[k])?;
    let (at, ct) = (
        Tensor::from_slice(ctx, &upstream, &[n])?,
        Tensor::from_slice(ctx, &upstream, &[n])?,
    );
    drop((x, w));
    let options = HeadStats {
        temperature: 0.7,
        ..Default::default()
    };
    let targets = Targets::Indices(&labels);
    let fused_forward = || -> Result<(), BoxError> {
        drop(xt.linear_head(&wt, Some(&bt), targets, &options)?);
        Ok(())
    };
    let fused_step = || -> Result<(), BoxError> {
        let s = xt.linear_head(&wt, Some(&bt), targets, &options)?;
        let grads = xt.linear_head_backward(&wt, Some(&bt), targets, &s, Some(&at), Some(&ct))?;
        drop((s, grads));
        Ok(())
    };
    let materialised_forward = || -> Result<(), BoxError> {
        let logits = xt.linear(&wt, Some(&bt))?;
        drop(logits.head_stats(targets, &options)?);
        Ok(())
    };
    let one_pass_step = || -> Result<(), BoxError> {
        let r = xt.linear_head_step(&wt, Some(&bt), targets, &options, |rows, _, _| {
            let a: Vec<f32> = rows.clone().map(|i| upstream[i]).collect();
            (a.clone(), a)
        })?;
        drop(r);
        Ok(())
    };
    let materialised_step = || -> Result<(), BoxError> {
        let logits = xt.linear(&wt, Some(&bt))?;
        let s = logits.head_stats(targets, &options)?;
        let g = logits.head_stats_backward(targets, &s, Some(&at), Some(&ct))?;
        drop(logits);
        let grads = xt.linear_backward(&wt, &g)?;
        drop((s, g, grads));
        Ok(())
    };
    let (peak, timed) = (
        |f: Call<'_>| peak_of(ctx, f),
        |f: Call<'_>| seconds_of(ctx, f),
    );
    let (first_step, fused_peak) = peak(&fused_step)?;
    let (first_one_pass, one_pass_peak) = peak(&one_pass_step)?;
    let (materialised_peak, materialised_error) = match peak(&materialised_step) {
        Ok((_, bytes)) => (Some(bytes), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let paired = materialised_error.is_none();
    let maybe = |f: &dyn Fn() -> Result<(), BoxError>| -> Result<Option<f64>, BoxError> {
        if paired {
            Ok(Some(timed(f)?))
        } else {
            Ok(None)
        }
    };
    let [mut ff, mut mf, mut fs, mut os, mut ms] = [(); 5].map(|_| Vec::new());
    let [mut fwd_ratio, mut step_ratio, mut one_pass_ratio] = [(); 3].map(|_| Vec::new());
    for i in 0..warmup + runs {
        let f = timed(&fused_forward)?;
        let m = maybe(&materialised_forward)?;
        let fstep = timed(&fused_step)?;
        let ostep = timed(&one_pass_step)?;
        let mstep = maybe(&materialised_step)?;
        if i >= warmup {
            ff.push(f);
            fs.push(fstep);
            os.push(ostep);
            if let (Some(m), Some(mstep)) = (m, mstep) {
                mf.push(m);
                ms.push(mstep);
                fwd_ratio.push(m / f);
                step_ratio.push(mstep / fstep);
                one_pass_ratio.push(mstep / ostep);
            }
        }
    }
    if fs.is_empty() {
        fs.push(first_step);
        os.push(first_one_pass);
    }
    let med = |v: &mut Vec<f64>| (!v.is_empty()).then(|| median(v));
    let per_row = 4 * (5 + 2 + 1) * n as u64;
    Ok(LinearHeadJson {
        shape: vec![n, h, k],
        fused_forward_ms: med(&mut ff).unwrap_or(f64::NAN) * 1e3,
        materialised_forward_ms: med(&mut mf).map(|v| v * 1e3),
        forward_speedup: med(&mut fwd_ratio),
        fused_step_ms: median(&mut fs) * 1e3,
        one_pass_step_ms: median(&mut os) * 1e3,
        materialised_step_ms: med(&mut ms).map(|v| v * 1e3),
        step_speedup: med(&mut step_ratio),
        one_pass_speedup: med(&mut one_pass_ratio),
        fused_peak_bytes: fused_peak,
        one_pass_peak_bytes: one_pass_peak,
        budget_bytes: 4 * 2 * (n * h + k * h + k) as u64 + per_row + (64 << 20),
        materialised_peak_bytes: materialised_peak,
        materialised_error,
    })
}

/// The linear layer `[N, H] × [K, H]ᵀ` forward and backward against the adapter's FMA peak,
/// each layer run paired with a peak-probe run (the median of the pairs' ratios).
pub(crate) fn measure_linear(
    ctx: &Context,
    (n, h, k): (usize, usize, usize),
    warmup: usize,
    runs: usize,
) -> Result<MatmulJson, BoxError> {
    let x: Vec<f32> = (0..n * h)
        .map(|i| ((i * 7919 % 1009) as f32 / 1009.0) - 0.5)
        .collect();
    let w: Vec<f32> = (0..k * h)
        .map(|i| ((i * 104729 % 997) as f32 / 997.0) - 0.5)
        .collect();
    let g: Vec<f32> = (0..n * k)
        .map(|i| ((i * 31 % 101) as f32 / 101.0) - 0.5)
        .collect();
    let xt = Tensor::from_slice(ctx, &x, &[n, h])?;
    let wt = Tensor::from_slice(ctx, &w, &[k, h])?;
    let bt = Tensor::from_slice(ctx, &vec![0.1; k], &[k])?;
    let gt = Tensor::from_slice(ctx, &g, &[n, k])?;
    let timed = |f: Call<'_>| seconds_of(ctx, f);
    let forward = || -> Result<(), BoxError> {
        xt.linear(&wt, Some(&bt))?;
        Ok(())
    };
    let backward = || -> Result<(), BoxError> {
        xt.linear_backward(&wt, &gt)?;
        Ok(())
    };
    // Size the probe to take about as long as the forward.
    let (workgroups, mut rounds) = (1024u32, 64u32);
    // The CPU backend has no FMA probe: its peak and fractions are NaN (null in the JSON).
    let probe = |rounds: u32| -> Result<(f64, u64), BoxError> {
        let t = Instant::now();
        let flops = ctx.fma_peak_probe(workgroups, rounds)?.unwrap_or(0);
        ctx.synchronize()?;
        Ok((t.elapsed().as_secs_f64(), flops))
    };
    for _ in 0..warmup.max(1) {
        let forward_once = timed(&forward)?;
        timed(&backward)?;
        let (t, _) = probe(rounds)?;
        rounds =
            ((f64::from(rounds) * forward_once / t.max(1e-6)) as u32).clamp(16, MAX_PROBE_ROUNDS);
    }
    let flops = 2.0 * (n * h * k) as f64;
    let (mut fwd, mut bwd, mut peak, mut fwd_ratio, mut bwd_ratio) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let f = timed(&forward)?;
        let b = timed(&backward)?;
        let (t, probe_flops) = probe(rounds)?;
        let p = if probe_flops == 0 {
            f64::NAN
        } else {
            probe_flops as f64 / t
        };
        fwd_ratio.push(flops / f / p);
        bwd_ratio.push(2.0 * flops / b / p);
        fwd.push(f);
        bwd.push(b);
        peak.push(p);
    }
    let (f, b, p) = (median(&mut fwd), median(&mut bwd), median(&mut peak));
    Ok(MatmulJson {
        shape: vec![n, h, k],
        forward_ms: f * 1e3,
        forward_gflops: flops / f / 1e9,
        backward_ms: b * 1e3,
        backward_gflops: 2.0 * flops / b / 1e9,
        peak_gflops: p / 1e9,
        forward_fraction_of_peak: median(&mut fwd_ratio),
        backward_fraction_of_peak: median(&mut bwd_ratio),
    })
}

/// One call of a benchmarked op.
type Call<'a> = &'a dyn Fn() -> Result<(), BoxError>;

/// Seconds and peak device bytes of one call of `f`, the inputs resident and nothing idle in
/// the pool.
fn peak_of(ctx: &Context, f: Call<'_>) -> Result<(f64, u64), BoxError> {
    ctx.synchronize()?;
    ctx.trim_pool();
    ctx.reset_peak_device_bytes();
    let t = Instant::now();
    let result = f();
    ctx.synchronize()?;
    let elapsed = t.elapsed().as_secs_f64();
    result?;
    Ok((elapsed, ctx.device_bytes().1))
}

/// Seconds of one call of `f`, until the device is done.
fn seconds_of(ctx: &Context, f: Call<'_>) -> Result<f64, BoxError> {
    let t = Instant::now();
    f()?;
    ctx.synchronize()?;
    Ok(t.elapsed().as_secs_f64())
}

/// A fused head's benchmark inputs: x `[n, h]` in [−0.5, 0.5), W `[k, h]` in [−0.05, 0.05) and
/// one class label per row, from fixed integer patterns.
fn head_inputs(n: usize, h: usize, k: usize) -> (Vec<f32>, Vec<f32>, Vec<i64>) {
    let x = (0..n * h)
        .map(|i| ((i * 7919 % 1009) as f32 / 1009.0) - 0.5)
        .collect();
    let w = (0..k * h)
        .map(|i| (((i * 104729 % 997) as f32 / 997.0) - 0.5) * 0.1)
        .collect();
    let labels = (0..n).map(|i| ((i * 7 + 3) % k) as i64).collect();
    (x, w, labels)
}
