//! A GRPO-style policy-gradient run on a contextual bandit, through the fused linear head: the
//! policy is one linear layer over fixed features, `π(a | s) = softmax((W·φ_s + b)/T)`, and the
//! loss is written here, by the caller, on the per-token log-probabilities and entropies that
//! `Tensor::linear_head` returns — what reinforcement-learning fine-tuning of a language model
//! does with its head (PPO, GRPO), at toy scale.
//!
//! Each iteration samples a group of `G` arms for every context from the current policy,
//! scores them (1 for the context's best arm, ½ for its neighbours, 0 otherwise), and turns
//! the rewards into group-relative advantages `A = (r − mean) / (std + 1e-4)` (GRPO). Then a few
//! optimisation epochs minimise the clipped-ratio loss
//!
//!   `L = −(1/N) Σ min(ρ·A, clip(ρ, 1 − ε, 1 + ε)·A) − (β/N) Σ H`,   `ρ = e^{log π − log π_old}`
//!
//! whose upstream gradients the host forms from `log π` (`∂L/∂log π = −ρA/N` where the
//! unclipped branch is the smaller, else 0; `∂L/∂H = −β/N`) and hands to
//! `Tensor::linear_head_backward`, which returns dW and db without the `[N, K]` logits; Adam
//! steps W and b on the device. The policy converges to each context's best arm.
//!
//! Run with `cargo run --release --example policy_gradient [-- --plot loss.svg]`; `--plot`
//! draws the loss and the mean reward per iteration (SVG). `tests/policy_gradient.rs` runs the
//! same training and asserts that it converges.

use gpu_activations::{Adam, AdamState, Context, HeadStats, Targets, Tensor};

/// The bandit and the training's settings.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Contexts (the "prompts") and the dim of their fixed features.
    pub contexts: usize,
    pub features: usize,
    /// Arms (the "vocabulary") and samples per context (the group).
    pub arms: usize,
    pub group: usize,
    /// Iterations (sample, then optimise) and optimisation epochs per iteration.
    pub iterations: usize,
    pub epochs: usize,
    /// ε of the clip, β of the entropy bonus, Adam's learning rate, the sampling temperature.
    pub clip: f32,
    pub entropy_bonus: f32,
    pub lr: f32,
    pub temperature: f32,
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            contexts: 32,
            features: 32,
            arms: 8,
            group: 8,
            iterations: 60,
            epochs: 2,
            clip: 0.2,
            entropy_bonus: 0.01,
            lr: 0.1,
            temperature: 1.0,
            seed: 7,
        }
    }
}

/// One iteration's figures.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// The clipped-ratio loss of the last epoch (with the entropy bonus).
    pub loss: f64,
    /// The mean reward of the iteration's samples.
    pub reward: f64,
    /// The mean entropy of the policy over the samples.
    pub entropy: f64,
}

/// What a run produced.
pub struct Trained {
    pub steps: Vec<Step>,
    /// The fraction of contexts whose most probable arm is their best one, at the end.
    pub greedy_accuracy: f64,
}

/// A small, seeded generator (xorshift64*), so the run is the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The reward of arm `a` in a context whose best arm is `best`.
fn reward(a: usize, best: usize, arms: usize) -> f64 {
    let d = a.abs_diff(best).min(arms - a.abs_diff(best));
    match d {
        0 => 1.0,
        1 => 0.5,
        _ => 0.0,
    }
}

/// Trains the policy on `ctx` and returns its curve and its final greedy accuracy.
pub fn train(ctx: &Context, cfg: &Config) -> Result<Trained, Box<dyn std::error::Error>> {
    let mut rng = Rng(cfg.seed.max(1));
    let (s, h, k, g) = (cfg.contexts, cfg.features, cfg.arms, cfg.group);
    let features: Vec<f32> = (0..s * h)
        .map(|_| (2.0 * rng.next() - 1.0) as f32)
        .collect();
    let best: Vec<usize> = (0..s)
        .map(|_| (rng.next() * k as f64) as usize % k)
        .collect();
    let phi = Tensor::from_slice(ctx, &features, &[s, h])?;
    // Each sample's row of features: its context's, repeated G times.
    let n = s * g;
    let rows: Vec<f32> = (0..n)
        .flat_map(|i| features[(i / g) * h..(i / g + 1) * h].iter().copied())
        .collect();
    let x = Tensor::from_slice(ctx, &rows, &[n, h])?;
    let w = Tensor::zeros(ctx, &[k, h])?;
    let b = Tensor::zeros(ctx, &[k])?;
    let adam = Adam {
        lr: cfg.lr,
        ..Default::default()
    };
    let (mut state_w, mut state_b) = (AdamState::new(&w)?, AdamState::new(&b)?);
    let options = HeadStats {
        temperature: cfg.temperature,
        ..Default::default()
    };
    let mut steps = Vec::with_capacity(cfg.iterations);
    for _ in 0..cfg.iterations {
        // Sample G arms per context from the current policy (its probabilities, [S, K]).
        let logits = phi.linear(&w, Some(&b))?;
        let probs = scaled_softmax(&logits.to_vec()?, k, cfg.temperature);
        let mut arms = Vec::with_capacity(n);
        for i in 0..n {
            let p = &probs[(i / g) * k..(i / g + 1) * k];
            let u = rng.next() as f32;
            let mut acc = 0.0;
            let arm = p
                .iter()
                .position(|&q| {
                    acc += q;
                    u < acc
                })
                .unwrap_or(k - 1);
            arms.push(arm as i64);
        }
        // Group-relative advantages.
        let rewards: Vec<f64> = (0..n)
            .map(|i| reward(arms[i] as usize, best[i / g], k))
            .collect();
        let mut advantages = vec![0.0f64; n];
        for (group, adv) in rewards.chunks(g).zip(advantages.chunks_mut(g)) {
            let mean = group.iter().sum::<f64>() / g as f64;
            let var = group.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / g as f64;
            for (a, r) in adv.iter_mut().zip(group) {
                *a = (r - mean) / (var.sqrt() + 1e-4);
            }
        }
        let targets = Targets::Indices(&arms);
        // The old policy's log-probabilities, held fixed through the epochs.
        let old = x
            .linear_head(&w, Some(&b), targets, &options)?
            .logp
            .to_vec()?;
        let mut last = Step {
            loss: 0.0,
            reward: rewards.iter().sum::<f64>() / n as f64,
            entropy: 0.0,
        };
        for _ in 0..cfg.epochs {
            let stats = x.linear_head(&w, Some(&b), targets, &options)?;
            let (logp, entropy) = (stats.logp.to_vec()?, stats.entropy.to_vec()?);
            // The caller's loss and its upstream gradients, on the host.
            let (mut loss, mut grad_logp) = (0.0, vec![0.0f32; n]);
            let eps = f64::from(cfg.clip);
            for i in 0..n {
                let ratio = (f64::from(logp[i]) - f64::from(old[i])).exp();
                let a = advantages[i];
                let unclipped = ratio * a;
                let clipped = ratio.clamp(1.0 - eps, 1.0 + eps) * a;
                loss -= unclipped.min(clipped) / n as f64;
                if unclipped <= clipped {
                    grad_logp[i] = (-unclipped / n as f64) as f32;
                }
            }
            let beta = f64::from(cfg.entropy_bonus);
            let mean_entropy = entropy.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
            loss -= beta * mean_entropy;
            let grad_entropy = vec![(-beta / n as f64) as f32; n];
            let a = Tensor::from_slice(ctx, &grad_logp, &[n])?;
            let c = Tensor::from_slice(ctx, &grad_entropy, &[n])?;
            let (_, dw, db) =
                x.linear_head_backward(&w, Some(&b), targets, &stats, Some(&a), Some(&c))?;
            adam.step(&w, &dw, &mut state_w)?;
            adam.step(&b, &db, &mut state_b)?;
            last.loss = loss;
            last.entropy = mean_entropy;
        }
        steps.push(last);
    }
    let scores = phi.linear(&w, Some(&b))?.to_vec()?;
    let right = scores
        .chunks(k)
        .zip(&best)
        .filter(|(row, best)| {
            let top = row
                .iter()
                .enumerate()
                .max_by(|p, q| p.1.total_cmp(q.1))
                .map_or(0, |(i, _)| i);
            top == **best
        })
        .count();
    Ok(Trained {
        steps,
        greedy_accuracy: right as f64 / s as f64,
    })
}

/// `softmax(z/T)` of each row of `k` logits (for sampling, on the host).
fn scaled_softmax(z: &[f32], k: usize, temperature: f32) -> Vec<f32> {
    z.chunks(k)
        .flat_map(|row| {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = row.iter().map(|&v| ((v - m) / temperature).exp()).collect();
            let sum: f32 = e.iter().sum();
            e.into_iter().map(move |v| v / sum)
        })
        .collect()
}

/// Draws the loss and the mean reward per iteration to an SVG file.
fn plot(path: &std::path::Path, steps: &[Step]) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    if path.extension().and_then(|e| e.to_str()) != Some("svg") {
        return Err(format!("{}: --plot draws SVG; name a .svg file", path.display()).into());
    }
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        include_bytes!("../src/bin/gpu-activations/fonts/DejaVuSans-subset.ttf"),
    )
    .map_err(|_| "the bundled font does not load")?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(450);
        let iterations = steps.len() as f64;
        for (area, title, values, colour) in [
            (
                &left,
                "clipped-ratio loss",
                steps.iter().map(|s| s.loss).collect::<Vec<_>>(),
                RGBColor(0, 114, 178),
            ),
            (
                &right,
                "mean reward of the samples",
                steps.iter().map(|s| s.reward).collect(),
                RGBColor(213, 94, 0),
            ),
        ] {
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let pad = 0.05 * (hi - lo).max(1e-6);
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(52)
                .build_cartesian_2d(0.0..iterations, (lo - pad)..(hi + pad))?;
            chart
                .configure_mesh()
                .x_desc("iteration")
                .label_style(("sans-serif", 12))
                .draw()?;
            chart.draw_series(LineSeries::new(
                values.iter().enumerate().map(|(i, &v)| (i as f64, v)),
                colour.stroke_width(2),
            ))?;
        }
        root.present()?;
    }
    std::fs::write(path, svg)?;
    Ok(())
}

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut plot_to = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--plot" => plot_to = Some(args.next().ok_or("--plot needs a file name")?),
            other => return Err(format!("unknown argument {other:?} (takes --plot FILE)").into()),
        }
    }
    if let Some(path) = &plot_to
        && !path.ends_with(".svg")
    {
        return Err(format!("{path}: --plot draws SVG; name a .svg file").into());
    }
    let ctx = Context::new()?;
    println!("adapter: {}", ctx.adapter_info());
    let cfg = Config::default();
    let run = train(&ctx, &cfg)?;
    for (i, s) in run.steps.iter().enumerate() {
        if i % 10 == 0 || i + 1 == run.steps.len() {
            println!(
                "iteration {i:>3}: loss {:+.4}, mean reward {:.3}, entropy {:.3}",
                s.loss, s.reward, s.entropy
            );
        }
    }
    println!(
        "greedy arm is the best arm in {:.1} % of {} contexts",
        100.0 * run.greedy_accuracy,
        cfg.contexts
    );
    if let Some(path) = plot_to {
        plot(std::path::Path::new(&path), &run.steps)?;
        println!("wrote {path}");
    }
    Ok(())
}
