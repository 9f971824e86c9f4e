//! The `gpu-activations` binary, run as a user would: every op once per backend against the
//! library on the same adapter (bit for bit), every input dtype, every bad-input case (exit
//! status, one stderr line naming the file, no output written or touched), and the other
//! subcommands.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::uniform;
use gpu_activations::{
    Activation, BceOptions, Context, ContextOptions, CrossEntropyOptions, Gate, HeadOptions,
    LossAndGrad, Reduction, Targets, Tensor,
};
use npyz::WriterBuilder;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gpu-activations"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh directory for one test's files.
fn workdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

fn write_npy<T: npyz::Serialize>(path: &Path, values: &[T], shape: &[usize], dtype: &str) {
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let dtype = npyz::DType::Plain(dtype.parse().expect("a valid type string"));
    let file = std::fs::File::create(path).unwrap();
    let mut w = npyz::WriteOptions::new()
        .dtype(dtype)
        .shape(&shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .unwrap();
    w.extend(values.iter()).unwrap();
    w.finish().unwrap();
}

fn write_f32(path: &Path, values: &[f32], shape: &[usize]) {
    write_npy(path, values, shape, "<f4");
}

fn read_f32(path: &Path) -> (Vec<f32>, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let f = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = f.shape().iter().map(|&d| d as usize).collect();
    (f.into_vec::<f32>().unwrap(), shape)
}

/// The `--backend` value that picks the adapter `ctx` runs on (`vulkan:NAME`: lavapipe and
/// SwiftShader are both Vulkan adapters).
fn backend_name(ctx: &Context) -> String {
    match ctx.backend() {
        gpu_activations::Backend::Cpu => "cpu".into(),
        b => format!("{b}:{}", ctx.adapter_info().name),
    }
}

/// Every GPU present and the CPU backend, as the command line names them.
fn backends() -> Vec<Context> {
    common::all_backends()
}

/// Bitwise equality, NaN included.
fn assert_bits(case: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{case}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "{case}: element {i}: {g} vs {w}");
    }
}

struct Files {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = workdir();
        let root = dir.path().to_path_buf();
        Files { _dir: dir, root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }
}

#[test]
fn every_op_matches_the_library_bit_for_bit_on_every_backend() {
    let f = Files::new();
    let (rows, cols) = (6, 37);
    let x = uniform(1, rows * cols, -6.0, 6.0);
    let g = uniform(2, rows * cols, -1.0, 1.0);
    let probs: Vec<f32> = uniform(3, rows * cols, 0.0, 1.0);
    let labels: Vec<i64> = (0..rows as i64).map(|r| r * 5 % cols as i64).collect();
    write_f32(&f.path("x.npy"), &x, &[rows, cols]);
    write_f32(&f.path("g.npy"), &g, &[rows, cols]);
    write_f32(&f.path("p.npy"), &probs, &[rows, cols]);
    write_npy(&f.path("labels.npy"), &labels, &[rows], "<i8");
    for ctx in backends() {
        let b = backend_name(&ctx);
        // The library on a context built the way the command builds it.
        let lib = Context::with_options(ContextOptions {
            backend: Some(ctx.backend()),
            adapter: (ctx.backend() != gpu_activations::Backend::Cpu)
                .then(|| ctx.adapter_info().name.clone()),
            ..Default::default()
        })
        .unwrap();
        let xt = Tensor::from_slice(&lib, &x, &[rows, cols]).unwrap();
        let gt = Tensor::from_slice(&lib, &g, &[rows, cols]).unwrap();
        let mut cases: Vec<(Vec<String>, Vec<f32>)> = Vec::new();
        for act in Activation::ALL {
            let name = act.name().replace('_', "-");
            cases.push((
                vec![name.clone()],
                xt.activation(act).unwrap().to_vec().unwrap(),
            ));
            cases.push((
                vec![
                    format!("{name}-backward"),
                    "--grad-output".into(),
                    f.s("g.npy"),
                ],
                xt.activation_backward(act, &gt).unwrap().to_vec().unwrap(),
            ));
        }
        let params = Activation::LeakyRelu {
            negative_slope: 0.3,
        };
        cases.push((
            vec!["leaky-relu".into(), "--negative-slope".into(), "0.3".into()],
            xt.activation(params).unwrap().to_vec().unwrap(),
        ));
        let sp = Activation::Softplus {
            beta: 2.0,
            threshold: 5.0,
        };
        cases.push((
            vec![
                "softplus".into(),
                "--beta".into(),
                "2".into(),
                "--threshold".into(),
                "5".into(),
            ],
            xt.activation(sp).unwrap().to_vec().unwrap(),
        ));
        cases.push((
            vec!["elu".into(), "--alpha".into(), "0.5".into()],
            xt.activation(Activation::Elu { alpha: 0.5 })
                .unwrap()
                .to_vec()
                .unwrap(),
        ));
        // Every other parameter flag, forward and backward, off its op's default.
        for (flags, act) in [
            ("celu --alpha 0.7", Activation::Celu { alpha: 0.7 }),
            (
                "hardtanh --min-val -0.5 --max-val 2",
                Activation::Hardtanh {
                    min_val: -0.5,
                    max_val: 2.0,
                },
            ),
            (
                "threshold --threshold 0.3 --value -1",
                Activation::Threshold {
                    threshold: 0.3,
                    value: -1.0,
                },
            ),
            (
                "hardshrink --lambd 0.7",
                Activation::Hardshrink { lambd: 0.7 },
            ),
            (
                "softshrink --lambd 0.7",
                Activation::Softshrink { lambd: 0.7 },
            ),
            (
                "rrelu-eval --lower 0.1 --upper 0.3",
                Activation::RreluEval {
                    lower: 0.1,
                    upper: 0.3,
                },
            ),
            (
                "onnx-hardsigmoid --alpha 0.3 --beta 0.4",
                Activation::OnnxHardSigmoid {
                    alpha: 0.3,
                    beta: 0.4,
                },
            ),
            (
                "onnx-selu --alpha 1.5 --gamma 1.1",
                Activation::OnnxSelu {
                    alpha: 1.5,
                    gamma: 1.1,
                },
            ),
            (
                "onnx-thresholded-relu --alpha 0.5",
                Activation::OnnxThresholdedRelu { alpha: 0.5 },
            ),
            ("onnx-swish --alpha 2", Activation::OnnxSwish { alpha: 2.0 }),
        ] {
            let words: Vec<String> = flags.split(' ').map(String::from).collect();
            cases.push((words.clone(), xt.activation(act).unwrap().to_vec().unwrap()));
            let mut backward = words;
            backward[0] = format!("{}-backward", backward[0]);
            backward.extend(["--grad-output".into(), f.s("g.npy")]);
            cases.push((
                backward,
                xt.activation_backward(act, &gt).unwrap().to_vec().unwrap(),
            ));
        }
        cases.push((
            vec!["softmax".into()],
            xt.softmax().unwrap().to_vec().unwrap(),
        ));
        cases.push((
            vec!["log-softmax".into()],
            xt.log_softmax().unwrap().to_vec().unwrap(),
        ));
        cases.push((
            vec![
                "softmax-backward".into(),
                "--grad-output".into(),
                f.s("g.npy"),
            ],
            xt.softmax()
                .unwrap()
                .softmax_backward(&gt)
                .unwrap()
                .to_vec()
                .unwrap(),
        ));
        cases.push((
            vec![
                "log-softmax-backward".into(),
                "--grad-output".into(),
                f.s("g.npy"),
            ],
            xt.log_softmax()
                .unwrap()
                .log_softmax_backward(&gt)
                .unwrap()
                .to_vec()
                .unwrap(),
        ));
        for (extra, want) in cases {
            let out = f.path(&format!("out-{b}.npy"));
            let mut args = vec!["run".to_string(), extra[0].clone()];
            args.extend([
                "--input".into(),
                f.s("x.npy"),
                "--output".into(),
                out.to_string_lossy().into_owned(),
            ]);
            args.extend(extra[1..].iter().cloned());
            args.extend(["--backend".into(), b.clone()]);
            let o = bin().args(&args).output().unwrap();
            assert!(o.status.success(), "{b} {args:?}: {}", stderr(&o));
            let (got, shape) = read_f32(&out);
            assert_eq!(shape, vec![rows, cols]);
            assert_bits(&format!("{b} {}", extra[0]), &got, &want);
        }

        // Losses: gradient to --output, loss to --loss-output.
        let o = CrossEntropyOptions {
            reduction: Reduction::None,
            label_smoothing: 0.1,
            ..Default::default()
        };
        let want = xt.cross_entropy(Targets::Indices(&labels), &o).unwrap();
        run_loss(
            &f,
            &b,
            &[
                "cross-entropy",
                "--targets",
                &f.s("labels.npy"),
                "--reduction",
                "none",
                "--label-smoothing",
                "0.1",
            ],
            &want,
            &[rows],
        );

        let pt = Tensor::from_slice(&lib, &probs, &[rows, cols]).unwrap();
        let want = xt
            .cross_entropy(Targets::Probabilities(&pt), &CrossEntropyOptions::default())
            .unwrap();
        run_loss(
            &f,
            &b,
            &["cross-entropy", "--targets", &f.s("p.npy")],
            &want,
            &[],
        );

        let w: Vec<f32> = (0..cols).map(|c| 1.0 + c as f32 / 10.0).collect();
        write_f32(&f.path("w.npy"), &w, &[cols]);
        let o = BceOptions {
            reduction: Reduction::Sum,
            weight: Some(w.clone()),
            pos_weight: Some(w),
        };
        let want = xt.bce_with_logits(&pt, &o).unwrap();
        let args = [
            "bce-with-logits",
            "--targets",
            &f.s("p.npy"),
            "--reduction",
            "sum",
            "--weight",
            &f.s("w.npy"),
            "--pos-weight",
            &f.s("w.npy"),
        ];
        run_loss(&f, &b, &args, &want, &[]);
    }
}

#[test]
fn every_input_dtype_is_accepted() {
    let f = Files::new();
    let x64: Vec<f64> = vec![-2.5, -0.5, 0.0, 0.25, 1.5, 3.0];
    let want: Vec<f32> = x64.iter().map(|&v| (v as f32).max(0.0)).collect();
    write_npy(
        &f.path("f4le.npy"),
        &x64.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        &[2, 3],
        "<f4",
    );
    write_npy(
        &f.path("f4be.npy"),
        &x64.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        &[2, 3],
        ">f4",
    );
    write_npy(&f.path("f8le.npy"), &x64, &[2, 3], "<f8");
    write_npy(&f.path("f8be.npy"), &x64, &[2, 3], ">f8");
    for name in ["f4le", "f4be", "f8le", "f8be"] {
        let o = run(&[
            "run",
            "relu",
            "--input",
            &f.s(&format!("{name}.npy")),
            "--output",
            &f.s("y.npy"),
            "--backend",
            "cpu",
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert_eq!(
            read_f32(&f.path("y.npy")),
            (want.clone(), vec![2, 3]),
            "{name}"
        );
    }
    // Class indices in every integer dtype (and as integral floats).
    write_f32(&f.path("z.npy"), &[1.0, 2.0, 3.0, 3.0, 2.0, 1.0], &[2, 3]);
    let mut losses = Vec::new();
    for dtype in ["|i1", "<i2", ">i4", "<i8", "|u1", "<u2", ">u4", "<u8"] {
        let path = f.path("t.npy");
        match dtype {
            "|i1" => write_npy(&path, &[2i8, 0], &[2], dtype),
            "<i2" => write_npy(&path, &[2i16, 0], &[2], dtype),
            ">i4" => write_npy(&path, &[2i32, 0], &[2], dtype),
            "<i8" => write_npy(&path, &[2i64, 0], &[2], dtype),
            "|u1" => write_npy(&path, &[2u8, 0], &[2], dtype),
            "<u2" => write_npy(&path, &[2u16, 0], &[2], dtype),
            ">u4" => write_npy(&path, &[2u32, 0], &[2], dtype),
            _ => write_npy(&path, &[2u64, 0], &[2], dtype),
        }
        losses.push(cross_entropy_loss(&f, dtype));
    }
    write_npy(&f.path("t.npy"), &[2.0f64, 0.0], &[2], "<f8");
    losses.push(cross_entropy_loss(&f, "float indices"));
    // Row 0 has logits [1, 2, 3] and class 2; row 1 [3, 2, 1] and class 0: both −log σ-max.
    let want = (1.0f64 + (-1.0f64).exp() + (-2.0f64).exp()).ln() as f32;
    assert!(
        losses.iter().all(|&l| (l - want).abs() < 1e-6),
        "{losses:?} vs {want}"
    );
}

#[test]
fn half_storage_reads_and_writes_float16_and_rounds_to_bf16() {
    let f = Files::new();
    let x: Vec<f32> = uniform(5, 64, -6.0, 6.0);
    let x16: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
    write_npy(&f.path("x16.npy"), &x16, &[4, 16], "<f2");
    write_f32(&f.path("x32.npy"), &x, &[4, 16]);
    for ctx in backends() {
        let b = backend_name(&ctx);
        // A float16 input runs in f16 and writes float16.
        let o = run(&[
            "run",
            "gelu",
            "--input",
            &f.s("x16.npy"),
            "--output",
            &f.s("y16.npy"),
            "--backend",
            &b,
        ]);
        assert!(o.status.success(), "{b}: {}", stderr(&o));
        let bytes = std::fs::read(f.path("y16.npy")).unwrap();
        let file = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(file.dtype().descr(), "'<f2'", "{b}: a float16 file");
        let got: Vec<f32> = file
            .into_vec::<half::f16>()
            .unwrap()
            .iter()
            .map(|h| h.to_f32())
            .collect();
        let want = Tensor::from_f16(&ctx, &x16, &[4, 16])
            .unwrap()
            .gelu()
            .unwrap();
        assert_eq!(want.dtype(), gpu_activations::DType::F16);
        assert_bits(&format!("{b} f16 gelu"), &got, &want.to_vec().unwrap());

        // --dtype bf16 on a float32 input: float32 out, holding bf16 values.
        let o = run(&[
            "run",
            "softmax",
            "--input",
            &f.s("x32.npy"),
            "--output",
            &f.s("ybf.npy"),
            "--dtype",
            "bf16",
            "--backend",
            &b,
        ]);
        assert!(o.status.success(), "{b}: {}", stderr(&o));
        let (got, shape) = read_f32(&f.path("ybf.npy"));
        assert_eq!(shape, vec![4, 16]);
        let bf = gpu_activations::DType::BF16;
        let want = Tensor::from_slice_as(&ctx, &x, &[4, 16], bf)
            .unwrap()
            .softmax()
            .unwrap();
        assert_bits(&format!("{b} bf16 softmax"), &got, &want.to_vec().unwrap());
        assert!(
            got.iter().all(|&v| bf.round(v).to_bits() == v.to_bits()),
            "{b}: bf16 values"
        );
    }
    let o = run(&[
        "run",
        "relu",
        "--input",
        &f.s("x32.npy"),
        "--output",
        &f.s("y.npy"),
        "--dtype",
        "f8",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("f8"), "{}", stderr(&o));
    assert!(!f.path("y.npy").exists());
}

#[test]
fn the_families_ops_run_bit_for_bit_with_the_library() {
    let f = Files::new();
    let shape = [2, 6, 4];
    let x = uniform(60, 48, -3.0, 3.0);
    let g = uniform(61, 48, -1.0, 1.0);
    let w: Vec<f32> = (0..6).map(|c| 0.1 * c as f32 - 0.2).collect();
    write_f32(&f.path("x.npy"), &x, &shape);
    write_f32(&f.path("g.npy"), &g, &shape);
    write_f32(&f.path("g_half.npy"), &g[..24], &[2, 6, 2]);
    write_f32(&f.path("w.npy"), &w, &[6]);
    write_npy(
        &f.path("t.npy"),
        &[0i64, 5, 2, 3, 1, 4, 0, 2],
        &[2, 4],
        "<i8",
    );
    for ctx in backends() {
        let b = backend_name(&ctx);
        let xt = Tensor::from_slice(&ctx, &x, &shape).unwrap();
        let gt = Tensor::from_slice(&ctx, &g, &shape).unwrap();
        let wt = Tensor::from_slice(&ctx, &w, &[6]).unwrap();
        let gh = Tensor::from_slice(&ctx, &g[..24], &[2, 6, 2]).unwrap();
        let labels = [0i64, 5, 2, 3, 1, 4, 0, 2];
        let y = xt.softmin(1).unwrap();
        let ce = xt
            .cross_entropy_dim1(Targets::Indices(&labels), &CrossEntropyOptions::default())
            .unwrap();
        let nll = xt
            .nll_loss_dim1(Targets::Indices(&labels), &CrossEntropyOptions::default())
            .unwrap();
        let (dx, dw) = xt.prelu_backward(&wt, &gt).unwrap();
        let cases: Vec<(Vec<String>, Vec<f32>)> = vec![
            (
                vec!["swiglu".into()],
                xt.gated(Gate::Swiglu).unwrap().to_vec().unwrap(),
            ),
            (
                vec![
                    "geglu-tanh-backward".into(),
                    "--grad-output".into(),
                    f.s("g_half.npy"),
                ],
                xt.gated_backward(Gate::GegluTanh, &gh)
                    .unwrap()
                    .to_vec()
                    .unwrap(),
            ),
            (
                vec!["prelu".into(), "--weight".into(), f.s("w.npy")],
                xt.prelu(&wt).unwrap().to_vec().unwrap(),
            ),
            (
                vec!["softmax-dim".into(), "--dim".into(), "1".into()],
                xt.softmax_dim(1).unwrap().to_vec().unwrap(),
            ),
            (
                vec![
                    "softmin-backward".into(),
                    "--dim".into(),
                    "1".into(),
                    "--grad-output".into(),
                    f.s("g.npy"),
                ],
                y.softmin_backward(1, &gt).unwrap().to_vec().unwrap(),
            ),
            (
                vec![
                    "cross-entropy-dim1".into(),
                    "--targets".into(),
                    f.s("t.npy"),
                ],
                ce.grad.to_vec().unwrap(),
            ),
            (
                vec!["nll-loss-dim1".into(), "--targets".into(), f.s("t.npy")],
                nll.grad.to_vec().unwrap(),
            ),
        ];
        for (extra, want) in cases {
            let out = f.path("out.npy");
            let mut args = vec![
                "run".to_string(),
                extra[0].clone(),
                "--input".into(),
                f.s("x.npy"),
            ];
            args.extend(["--output".into(), out.to_string_lossy().into_owned()]);
            args.extend(extra[1..].iter().cloned());
            args.extend(["--backend".into(), b.clone()]);
            let o = bin().args(&args).output().unwrap();
            assert!(o.status.success(), "{b} {args:?}: {}", stderr(&o));
            assert_bits(&format!("{b} {}", extra[0]), &read_f32(&out).0, &want);
        }
        // The gated ops with the gates as a tensor of their own (`--gate`, X's shape).
        let o = run(&[
            "run",
            "swiglu",
            "--input",
            &f.s("x.npy"),
            "--gate",
            &f.s("g.npy"),
            "--output",
            &f.s("y_pair.npy"),
            "--backend",
            &b,
        ]);
        assert!(o.status.success(), "{b}: {}", stderr(&o));
        let want = Tensor::gated_pair(Gate::Swiglu, &xt, &gt).unwrap();
        assert_bits(
            &format!("{b} swiglu --gate"),
            &read_f32(&f.path("y_pair.npy")).0,
            &want.to_vec().unwrap(),
        );
        let o = run(&[
            "run",
            "geglu-backward",
            "--input",
            &f.s("x.npy"),
            "--gate",
            &f.s("g.npy"),
            "--grad-output",
            &f.s("x.npy"),
            "--output",
            &f.s("da.npy"),
            "--gate-grad-output",
            &f.s("db.npy"),
            "--backend",
            &b,
        ]);
        assert!(o.status.success(), "{b}: {}", stderr(&o));
        let (da, db) = Tensor::gated_pair_backward(Gate::Geglu, &xt, &gt, &xt).unwrap();
        for (file, want) in [("da.npy", da), ("db.npy", db)] {
            let got = read_f32(&f.path(file));
            assert_eq!(got.1, shape, "{b} geglu-backward --gate {file}");
            assert_bits(
                &format!("{b} geglu-backward --gate {file}"),
                &got.0,
                &want.to_vec().unwrap(),
            );
        }
        // --gate must have X's shape, and belongs to the gated ops.
        let never = f.path("never.npy");
        let args = [
            "run",
            "glu",
            "--input",
            &f.s("x.npy"),
            "--gate",
            &f.s("g_half.npy"),
            "--output",
            &never.to_string_lossy(),
            "--backend",
            &b,
        ];
        assert_fails(&args, "g_half.npy", &never);
        let o = run(&[
            "run",
            "relu",
            "--input",
            &f.s("x.npy"),
            "--gate",
            &f.s("g.npy"),
            "--output",
            &never.to_string_lossy(),
        ]);
        assert!(
            !o.status.success() && stderr(&o).contains("--gate"),
            "{}",
            stderr(&o)
        );
        // A gated backward with --gate must say where the gates' gradient goes.
        let o = run(&[
            "run",
            "glu-backward",
            "--input",
            &f.s("x.npy"),
            "--gate",
            &f.s("g.npy"),
            "--grad-output",
            &f.s("x.npy"),
            "--output",
            &never.to_string_lossy(),
        ]);
        assert!(
            !o.status.success() && stderr(&o).contains("--gate-grad-output"),
            "{}",
            stderr(&o)
        );
        assert!(!never.exists());
        // prelu-backward writes the slopes' gradient beside dX; the losses write their loss.
        let o = run(&[
            "run",
            "prelu-backward",
            "--input",
            &f.s("x.npy"),
            "--weight",
            &f.s("w.npy"),
            "--grad-output",
            &f.s("g.npy"),
            "--output",
            &f.s("dx.npy"),
            "--weight-grad-output",
            &f.s("dw.npy"),
            "--backend",
            &b,
        ]);
        assert!(o.status.success(), "{b}: {}", stderr(&o));
        assert_bits(
            &format!("{b} prelu dx"),
            &read_f32(&f.path("dx.npy")).0,
            &dx.to_vec().unwrap(),
        );
        assert_bits(
            &format!("{b} prelu dw"),
            &read_f32(&f.path("dw.npy")).0,
            &dw.to_vec().unwrap(),
        );
        // A 0-d slope (one for all channels, as torch.nn.PReLU's num_parameters=1 squeezed)
        // gets a 0-d gradient: the weight's own shape.
        write_f32(&f.path("w0.npy"), &[0.3], &[]);
        let o = run(&[
            "run",
            "prelu-backward",
            "--input",
            &f.s("x.npy"),
            "--weight",
            &f.s("w0.npy"),
            "--grad-output",
            &f.s("g.npy"),
            "--output",
            &f.s("dx0.npy"),
            "--weight-grad-output",
            &f.s("dw0.npy"),
            "--backend",
            &b,
        ]);
        assert!(o.status.success(), "{b}: {}", stderr(&o));
        let (dw0, dw0_shape) = read_f32(&f.path("dw0.npy"));
        assert_eq!(
            dw0_shape,
            Vec::<usize>::new(),
            "{b}: a 0-d slope's gradient is 0-d"
        );
        let one = Tensor::from_slice(&ctx, &[0.3], &[1]).unwrap();
        let (_, want) = xt.prelu_backward(&one, &gt).unwrap();
        assert_bits(&format!("{b} prelu 0-d dw"), &dw0, &want.to_vec().unwrap());
        let o = run(&[
            "run",
            "cross-entropy-dim1",
            "--input",
            &f.s("x.npy"),
            "--targets",
            &f.s("t.npy"),
            "--reduction",
            "none",
            "--output",
            &f.s("dz.npy"),
            "--loss-output",
            &f.s("l.npy"),
            "--backend",
            &b,
        ]);
        assert!(o.status.success(), "{b}: {}", stderr(&o));
        assert_eq!(
            read_f32(&f.path("l.npy")).1,
            vec![2, 4],
            "{b}: loss of shape [N, d1]"
        );
    }
    // Bad input names the problem and writes nothing.
    let out = f.path("never.npy");
    let o = run(&[
        "run",
        "prelu",
        "--input",
        &f.s("x.npy"),
        "--output",
        &out.to_string_lossy(),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("--weight"),
        "{}",
        stderr(&o)
    );
    write_f32(&f.path("odd.npy"), &x[..42], &[2, 3, 7]);
    let o = run(&[
        "run",
        "glu",
        "--input",
        &f.s("odd.npy"),
        "--output",
        &out.to_string_lossy(),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("odd.npy"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("even"), "{}", stderr(&o));
    let o = run(&[
        "run",
        "softmax-dim",
        "--dim",
        "3",
        "--input",
        &f.s("x.npy"),
        "--output",
        &out.to_string_lossy(),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("dim"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

#[test]
fn class_index_targets_must_have_the_rows_shape_and_nll_loss_takes_either_layout() {
    let f = Files::new();
    let shape = [2, 6, 4];
    let x = uniform(62, 48, -3.0, 0.0);
    write_f32(&f.path("x.npy"), &x, &shape);
    // Class at dim 1: one index per [N, d1] = [2, 4] position; class last: one per [2, 6] row.
    let dim1: Vec<i64> = vec![0, 5, 2, 3, 1, 4, 0, 2];
    let last: Vec<i64> = (0..12).map(|r| r % 4).collect();
    write_npy(&f.path("t24.npy"), &dim1, &[2, 4], "<i8");
    write_npy(&f.path("t42.npy"), &dim1, &[4, 2], "<i8");
    write_npy(&f.path("t8.npy"), &dim1, &[8], "<i8");
    write_npy(&f.path("t26.npy"), &last, &[2, 6], "<i8");
    write_npy(&f.path("t12.npy"), &last, &[12], "<i8");
    write_npy(&f.path("t62.npy"), &last, &[6, 2], "<i8");
    let last_f: Vec<f32> = last.iter().map(|&v| v as f32).collect();
    write_npy(&f.path("t26f.npy"), &last_f, &[2, 6], "<f4");
    for ctx in backends() {
        let b = backend_name(&ctx);
        let xt = Tensor::from_slice(&ctx, &x, &shape).unwrap();
        let o = CrossEntropyOptions::default();
        let want_last = xt.nll_loss(Targets::Indices(&last), &o).unwrap();
        for targets in ["t26.npy", "t12.npy", "t26f.npy"] {
            let args = [
                "run",
                "nll-loss",
                "--input",
                &f.s("x.npy"),
                "--targets",
                &f.s(targets),
                "--output",
                &f.s("dx.npy"),
                "--loss-output",
                &f.s("l.npy"),
                "--backend",
                &b,
            ];
            let out = run(&args);
            assert!(out.status.success(), "{b} {targets}: {}", stderr(&out));
            let dx = want_last.grad.to_vec().unwrap();
            assert_bits(
                &format!("{b} nll-loss {targets}"),
                &read_f32(&f.path("dx.npy")).0,
                &dx,
            );
            let l = want_last.loss.to_vec().unwrap();
            assert_bits(
                &format!("{b} nll-loss loss"),
                &read_f32(&f.path("l.npy")).0,
                &l,
            );
        }
        // A target array with the right count but the wrong shape names the shape it needs and
        // writes nothing.
        let output = f.path("never.npy");
        for (op, targets, needed) in [
            ("cross-entropy-dim1", "t42.npy", "[2, 4]"),
            ("cross-entropy-dim1", "t8.npy", "[2, 4]"),
            ("nll-loss-dim1", "t42.npy", "[2, 4]"),
            ("nll-loss", "t62.npy", "[2, 6]"),
            ("cross-entropy", "t62.npy", "[2, 6]"),
        ] {
            let args = [
                "run",
                op,
                "--input",
                &f.s("x.npy"),
                "--targets",
                &f.s(targets),
                "--output",
                &output.to_string_lossy(),
                "--backend",
                &b,
            ];
            assert_fails(&args, targets, &output);
            let err = stderr(&run(&args));
            assert!(err.contains(needed), "{b} {op} {targets}: {err}");
        }
        assert!(!output.exists());
    }
}

#[test]
fn the_targets_shape_a_2d_input_needs_is_named_once() {
    let f = Files::new();
    write_f32(&f.path("x.npy"), &uniform(63, 12, -3.0, 3.0), &[4, 3]);
    write_npy(&f.path("t.npy"), &[0i64, 1, 2, 0], &[2, 2], "<i8");
    let output = f.path("never.npy");
    for op in ["cross-entropy", "nll-loss"] {
        let args = [
            "run",
            op,
            "--input",
            &f.s("x.npy"),
            "--targets",
            &f.s("t.npy"),
            "--output",
            &output.to_string_lossy(),
            "--backend",
            "cpu",
        ];
        assert_fails(&args, "t.npy", &output);
        let err = stderr(&run(&args));
        assert!(err.contains("shape [4]"), "{op}: {err}");
        assert!(!err.contains("[4] or [4]"), "{op}: {err}");
    }
}

#[test]
fn cross_entropy_takes_the_heads_options() {
    let f = Files::new();
    let (rows, classes) = (8, 50);
    let z = uniform(80, rows * classes, -30.0, 30.0);
    let labels: Vec<i64> = (0..rows as i64)
        .map(|r| (r * 11) % classes as i64)
        .collect();
    write_f32(&f.path("z.npy"), &z, &[rows, classes]);
    write_npy(&f.path("t.npy"), &labels, &[rows], "<i8");
    for ctx in backends() {
        let b = backend_name(&ctx);
        let zt = Tensor::from_slice(&ctx, &z, &[rows, classes]).unwrap();
        let head = gpu_activations::HeadOptions {
            lse_square_scale: 1e-3,
            softcap: Some(15.0),
        };
        let want = zt
            .cross_entropy_head(
                Targets::Indices(&labels),
                &CrossEntropyOptions::default(),
                &head,
            )
            .unwrap();
        let o = run(&[
            "run",
            "cross-entropy",
            "--input",
            &f.s("z.npy"),
            "--targets",
            &f.s("t.npy"),
            "--softcap",
            "15",
            "--lse-square-scale",
            "1e-3",
            "--output",
            &f.s("dz.npy"),
            "--loss-output",
            &f.s("loss.npy"),
            "--lse-output",
            &f.s("lse.npy"),
            "--z-loss-output",
            &f.s("zl.npy"),
            "--backend",
            &b,
        ]);
        assert!(o.status.success(), "{b}: {}", stderr(&o));
        for (file, t) in [
            ("dz.npy", &want.grad),
            ("loss.npy", &want.loss),
            ("lse.npy", &want.lse),
            ("zl.npy", &want.z_loss),
        ] {
            let (got, shape) = read_f32(&f.path(file));
            assert_eq!(shape, t.shape(), "{b} {file}");
            assert_bits(&format!("{b} {file}"), &got, &t.to_vec().unwrap());
        }
    }
    let out = f.path("never.npy");
    let o = run(&[
        "run",
        "bce-with-logits",
        "--input",
        &f.s("z.npy"),
        "--targets",
        &f.s("z.npy"),
        "--softcap",
        "15",
        "--output",
        &out.to_string_lossy(),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("--softcap"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "run",
        "cross-entropy",
        "--input",
        &f.s("z.npy"),
        "--targets",
        &f.s("t.npy"),
        "--softcap",
        "0",
        "--output",
        &out.to_string_lossy(),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("softcap"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

/// Runs a loss op (`args` = op and its options) on x.npy with --output dz.npy and
/// --loss-output loss.npy, and checks both bit for bit against the library's `want`.
fn run_loss(f: &Files, backend: &str, args: &[&str], want: &LossAndGrad, loss_shape: &[usize]) {
    let (x, dz, loss) = (f.s("x.npy"), f.s("dz.npy"), f.s("loss.npy"));
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.extend([
        "--input",
        &x,
        "--output",
        &dz,
        "--loss-output",
        &loss,
        "--backend",
        backend,
    ]);
    let out = run(&all);
    let case = format!("{backend} {}", args.join(" "));
    assert!(out.status.success(), "{case}: {}", stderr(&out));
    assert_bits(
        &format!("{case} grad"),
        &read_f32(&f.path("dz.npy")).0,
        &want.grad.to_vec().unwrap(),
    );
    let (l, shape) = read_f32(&f.path("loss.npy"));
    assert_eq!(shape, loss_shape, "{case}: loss shape");
    assert_bits(&format!("{case} loss"), &l, &want.loss.to_vec().unwrap());
}

/// Runs `cross-entropy` on z.npy with the targets in t.npy (CPU backend) and returns the loss.
fn cross_entropy_loss(f: &Files, case: &str) -> f32 {
    let o = run(&[
        "run",
        "cross-entropy",
        "--input",
        &f.s("z.npy"),
        "--targets",
        &f.s("t.npy"),
        "--output",
        &f.s("dz.npy"),
        "--loss-output",
        &f.s("l.npy"),
        "--backend",
        "cpu",
    ]);
    assert!(o.status.success(), "{case}: {}", stderr(&o));
    read_f32(&f.path("l.npy")).0[0]
}

/// Runs a failing command and checks: non-zero exit, one stderr line naming `file`, and the
/// output left as it was (absent, or with its old contents).
fn assert_fails(args: &[&str], file: &str, output: &Path) {
    let before = std::fs::read(output).ok();
    let o = run(args);
    assert!(!o.status.success(), "{args:?} should fail");
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected one stderr line, got {err:?}"
    );
    assert!(
        lines[0].contains(file),
        "{args:?}: {:?} should name {file}",
        lines[0]
    );
    assert_eq!(
        std::fs::read(output).ok(),
        before,
        "{args:?}: output changed"
    );
    let leftovers: Vec<_> = std::fs::read_dir(output.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "{args:?}: temporary files left: {leftovers:?}"
    );
}

#[test]
fn bad_input_fails_with_one_line_naming_the_file_and_writes_nothing() {
    let f = Files::new();
    write_f32(&f.path("x.npy"), &[0.5; 6], &[2, 3]);
    write_f32(&f.path("g23.npy"), &[0.5; 6], &[2, 3]);
    write_f32(&f.path("g32.npy"), &[0.5; 6], &[3, 2]);
    write_npy(&f.path("t_out.npy"), &[0i64, 3], &[2], "<i8");
    write_npy(&f.path("t_rows.npy"), &[0i64, 1, 2], &[3], "<i8");
    write_npy(&f.path("t_nan.npy"), &[0.0f32, f32::NAN], &[2], "<f4");
    write_npy(&f.path("w_len.npy"), &[1.0f32; 4], &[4], "<f4");
    write_npy(&f.path("ints.npy"), &[1i32; 6], &[2, 3], "<i4");
    std::fs::write(f.path("junk.npy"), b"not an npy file").unwrap();
    // A Fortran-order array.
    {
        let file = std::fs::File::create(f.path("fortran.npy")).unwrap();
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[2, 3])
            .order(npyz::Order::Fortran)
            .writer(std::io::BufWriter::new(file))
            .begin_nd()
            .unwrap();
        w.extend([0.5f32; 6]).unwrap();
        w.finish().unwrap();
    }
    let new_out = f.path("new.npy");
    let old_out = f.path("old.npy");
    write_f32(&old_out, &[42.0], &[1]);
    for out in [&new_out, &old_out] {
        let o = out.to_string_lossy().into_owned();
        let x = f.s("x.npy");
        assert_fails(
            &[
                "run",
                "relu",
                "--input",
                &f.s("missing.npy"),
                "--output",
                &o,
            ],
            "missing.npy",
            out,
        );
        assert_fails(
            &["run", "relu", "--input", &f.s("junk.npy"), "--output", &o],
            "junk.npy",
            out,
        );
        assert_fails(
            &[
                "run",
                "relu",
                "--input",
                &f.s("fortran.npy"),
                "--output",
                &o,
            ],
            "fortran.npy",
            out,
        );
        assert_fails(
            &["run", "relu", "--input", &f.s("ints.npy"), "--output", &o],
            "ints.npy",
            out,
        );
        assert_fails(
            &[
                "run",
                "relu-backward",
                "--input",
                &x,
                "--grad-output",
                &f.s("g32.npy"),
                "--output",
                &o,
            ],
            "g32.npy",
            out,
        );
        assert_fails(
            &[
                "run",
                "cross-entropy",
                "--input",
                &x,
                "--targets",
                &f.s("t_out.npy"),
                "--output",
                &o,
            ],
            "t_out.npy",
            out,
        );
        assert_fails(
            &[
                "run",
                "cross-entropy",
                "--input",
                &x,
                "--targets",
                &f.s("t_rows.npy"),
                "--output",
                &o,
            ],
            "t_rows.npy",
            out,
        );
        assert_fails(
            &[
                "run",
                "cross-entropy",
                "--input",
                &x,
                "--targets",
                &f.s("t_nan.npy"),
                "--output",
                &o,
            ],
            "t_nan.npy",
            out,
        );
        assert_fails(
            &[
                "run",
                "cross-entropy",
                "--input",
                &x,
                "--targets",
                &f.s("t_rows.npy"),
                "--weight",
                &f.s("w_len.npy"),
                "--output",
                &o,
            ],
            "w_len.npy",
            out,
        );
        assert_fails(
            &[
                "run",
                "bce-with-logits",
                "--input",
                &x,
                "--targets",
                &f.s("g32.npy"),
                "--output",
                &o,
            ],
            "g32.npy",
            out,
        );
        assert_fails(
            &[
                "run",
                "bce-with-logits",
                "--input",
                &x,
                "--targets",
                &f.s("g23.npy"),
                "--pos-weight",
                &f.s("w_len.npy"),
                "--output",
                &o,
            ],
            "w_len.npy",
            out,
        );
        // An output in a directory that does not exist names the output.
        let nowhere = f.path("no/such/dir/out.npy");
        assert_fails(
            &[
                "run",
                "relu",
                "--input",
                &x,
                "--output",
                &nowhere.to_string_lossy(),
            ],
            "out.npy",
            out,
        );
    }
}

#[test]
fn every_output_is_checked_before_any_is_written() {
    let f = Files::new();
    write_f32(&f.path("x.npy"), &uniform(1, 32, -3.0, 3.0), &[4, 8]);
    write_npy(&f.path("labels.npy"), &[0i64, 3, 7, 2], &[4], "<i8");
    std::fs::create_dir(f.path("adir")).unwrap();
    let keep = f.path("keep.npy");
    write_f32(&keep, &[1.0; 32], &[4, 8]);
    let ce = |output: &str, loss: &str| {
        vec![
            "run".to_string(),
            "cross-entropy".into(),
            "--input".into(),
            f.s("x.npy"),
            "--targets".into(),
            f.s("labels.npy"),
            "--output".into(),
            output.into(),
            "--loss-output".into(),
            loss.into(),
            "--backend".into(),
            "cpu".into(),
        ]
    };
    let args = ce(&f.s("keep.npy"), &f.s("adir"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // A second output that cannot be written leaves the first untouched.
    assert_fails(&args, "adir", &keep);
    // Two outputs naming one file (the second would replace the first).
    let same = f.root.join(".").join("keep.npy");
    let args = ce(&f.s("keep.npy"), &same.to_string_lossy());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_fails(&args, "same file", &keep);
    // Outputs are created as any new file is (0666 less the umask), not 0600.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let o = run(&[
            "run",
            "relu",
            "--input",
            &f.s("x.npy"),
            "--output",
            &f.s("y.npy"),
            "--backend",
            "cpu",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::File::create(f.path("plain")).unwrap();
        let mode = |name: &str| {
            std::fs::metadata(f.path(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("y.npy"), mode("plain"), "an output's mode");
    }
    // bench checks its report's path before it times anything, and writes neither report.
    let o = run(&[
        "bench",
        "--op",
        "relu",
        "--shape",
        "64,64",
        "--runs",
        "1",
        "--backend",
        "cpu",
        "--chart",
        &f.s("c.svg"),
        "--json",
        &f.s("missing/b.json"),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("missing"),
        "{}",
        stderr(&o)
    );
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("relu"),
        "bench ran before checking its outputs"
    );
    assert!(!f.path("c.svg").exists());
}

#[test]
fn info_check_demo_and_bench_work_on_every_backend() {
    let f = Files::new();
    for ctx in backends() {
        let b = backend_name(&ctx);
        let o = run(&["info", "--backend", &b]);
        assert!(o.status.success(), "info {b}: {}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("Chosen:") && text.contains(&ctx.adapter_info().name),
            "info {b}: {text}"
        );

        let o = run(&["check", "--backend", &b]);
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "check {b}: {text}{}", stderr(&o));
        assert!(text.contains(", 0 failed"), "check {b}: {text}");
        // It covers the family: each op named in its table.
        for op in [
            "glu-backward",
            "prelu-backward dslope",
            "softmin 1 backward",
            "log-softmax-dim 1 backward",
            "cross-entropy-dim1 grad",
            "nll-loss-dim1 grad",
            "nll-loss grad",
            "cross-entropy softcap + z-loss lse",
            "quick-gelu-backward",
            "squared-relu",
            "linear-backward dw",
            "linear-cross-entropy dx",
            "adam",
            "sgd",
        ] {
            assert!(text.contains(op), "check {b} does not cover {op}");
        }

        let o = run(&["demo", "--backend", &b, "--rows", "64", "--cols", "100"]);
        assert!(o.status.success(), "demo {b}: {}", stderr(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("largest error against the CPU reference")
        );

        let json = f.path(&format!("bench-{b}.json"));
        let o = run(&[
            "bench",
            "--backend",
            &b,
            "--op",
            "copy",
            "--op",
            "gelu",
            "--op",
            "softmax",
            "--op",
            "cross-entropy",
            "--shape",
            "64,100",
            "--runs",
            "2",
            "--warmup",
            "1",
            "--json",
            &json.to_string_lossy(),
        ]);
        assert!(o.status.success(), "bench {b}: {}", stderr(&o));
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(doc["adapter"]["backend"], ctx.backend().name());
        assert_eq!(doc["adapter"]["name"], ctx.adapter_info().name.as_str());
        let results = doc["results"].as_array().unwrap();
        assert_eq!(results.len(), 4);
        for r in results {
            for key in ["median_ms", "gbs", "fraction_of_copy", "cpu_speedup"] {
                assert!(
                    r[key].as_f64().is_some_and(|v| v > 0.0),
                    "bench {b}: {key} in {r}"
                );
            }
        }
        assert!(doc["copy_gbs"].as_f64().is_some_and(|v| v > 0.0));
    }
}

#[test]
fn bench_times_the_linear_layers_against_the_fma_peak_and_the_materialised_path() {
    let f = Files::new();
    for ctx in common::gpus() {
        let b = backend_name(ctx);
        let json = f.path(&format!("linear-{b}.json"));
        let o = run(&[
            "bench",
            "--backend",
            &b,
            "--op",
            "linear",
            "--op",
            "linear-cross-entropy",
            "--shape",
            "70,33,65",
            "--runs",
            "1",
            "--warmup",
            "1",
            "--json",
            &json.to_string_lossy(),
        ]);
        assert!(o.status.success(), "{b}: {}", stderr(&o));
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let m = &doc["matmul"][0];
        assert_eq!(m["shape"], serde_json::json!([70, 33, 65]), "{b}");
        for key in [
            "forward_gflops",
            "backward_gflops",
            "peak_gflops",
            "forward_fraction_of_peak",
        ] {
            assert!(m[key].as_f64().is_some_and(|v| v > 0.0), "{b} {key}: {m}");
        }
        let m = &doc["linear_cross_entropy"][0];
        assert_eq!(m["shape"], serde_json::json!([70, 33, 65]), "{b}");
        // The peak holds the inputs at least, and the budget is their bytes twice + 64 MiB.
        let inputs = 4 * (70 * 33 + 65 * 33 + 65);
        assert_eq!(m["budget_bytes"], 2 * inputs + (64 << 20), "{b}: {m}");
        for key in ["fused_peak_bytes", "materialised_peak_bytes"] {
            assert!(
                m[key].as_u64().is_some_and(|v| v >= inputs),
                "{b} {key}: {m}"
            );
        }
        for key in ["fused_ms", "materialised_ms"] {
            assert!(m[key].as_f64().is_some_and(|v| v > 0.0), "{b} {key}: {m}");
        }
    }
}

#[test]
fn train_learns_the_digits_and_names_a_bad_data_file() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits.csv");
    for ctx in backends() {
        let b = backend_name(&ctx);
        let o = run(&[
            "train",
            "--epochs",
            "60",
            "--data",
            &data.to_string_lossy(),
            "--backend",
            &b,
        ]);
        assert!(o.status.success(), "{b}: {}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        let accuracy: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("test accuracy: "))
            .and_then(|l| l.split(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{b}: no accuracy in {text}"));
        assert!(
            accuracy > 93.0,
            "{b}: softmax regression after 60 epochs: {accuracy} %"
        );
        // Every epoch's loss is printed (one line each when the output is not a terminal).
        for epoch in [1, 30, 60] {
            assert!(
                text.contains(&format!("epoch {epoch:>5}: loss ")),
                "{b}: no loss for epoch {epoch} in {text}"
            );
        }
    }
    // Bad input fails naming the problem and writes no picture.
    let f = Files::new();
    std::fs::write(f.path("bad.csv"), "header\n1,2,3\n").unwrap();
    let plot = f.path("loss.svg");
    let plot_arg = plot.to_string_lossy().into_owned();
    for (args, named) in [
        (vec!["--data", &f.s("bad.csv")], vec!["bad.csv", "line 2"]),
        (vec!["--data", &f.s("missing.csv")], vec!["missing.csv"]),
        (vec!["--lr", "NaN"], vec!["--lr"]),
        (vec!["--epochs", "0"], vec!["--epochs"]),
    ] {
        let mut all = vec!["train"];
        all.extend(&args);
        all.extend(["--plot", &plot_arg, "--backend", "cpu"]);
        let o = run(&all);
        assert!(!o.status.success(), "{all:?} should fail");
        for word in named {
            assert!(stderr(&o).contains(word), "{all:?}: {}", stderr(&o));
        }
        assert!(!plot.exists(), "{all:?} wrote {}", plot.display());
    }
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    for sub in ["info", "run", "check", "bench", "demo", "train"] {
        let o = run(&[sub, "--help"]);
        assert!(o.status.success());
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("Example"),
            "{sub} --help has no example: {text}"
        );
        assert!(text.contains("--backend"), "{sub} --help lacks --backend");
    }
}

/// Asserts that `args` fails with one stderr line holding every word of `words`, writes
/// nothing at `output` and does not panic or abort.
fn assert_refused(args: &[&str], words: &[&str], output: &Path) {
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected one stderr line, got {err:?}"
    );
    for word in words {
        assert!(
            lines[0].contains(word),
            "{args:?}: {:?} should name {word}",
            lines[0]
        );
    }
    assert!(!output.exists(), "{args:?} wrote {}", output.display());
}

#[test]
fn a_flag_an_op_does_not_take_is_refused_naming_the_flag_and_the_op() {
    let f = Files::new();
    write_f32(&f.path("x.npy"), &uniform(1, 12, -3.0, 3.0), &[3, 4]);
    write_f32(&f.path("g.npy"), &uniform(2, 12, -1.0, 1.0), &[3, 4]);
    write_f32(&f.path("probs.npy"), &[0.25; 12], &[3, 4]);
    write_f32(&f.path("pw.npy"), &[1.0; 4], &[4]);
    write_npy(&f.path("labels.npy"), &[0i64, 3, 1], &[3], "<i8");
    let (x, out) = (f.s("x.npy"), f.path("out.npy"));
    let (labels, probs, pw, g, loss) = (
        f.s("labels.npy"),
        f.s("probs.npy"),
        f.s("pw.npy"),
        f.s("g.npy"),
        f.s("loss.npy"),
    );
    let o = out.to_string_lossy().into_owned();
    let base = |op: &'static str| vec!["run", op, "--input", &x, "--output", &o];
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("softmax", vec!["--dim", "0"], "--dim"),
        (
            "relu",
            vec!["--label-smoothing", "0.3"],
            "--label-smoothing",
        ),
        ("relu", vec!["--negative-slope", "0.3"], "--negative-slope"),
        ("relu", vec!["--reduction", "sum"], "--reduction"),
        ("gelu", vec!["--targets", &labels], "--targets"),
        ("gelu", vec!["--grad-output", &g], "--grad-output"),
        (
            "bce-with-logits",
            vec!["--targets", &probs, "--label-smoothing", "0.5"],
            "--label-smoothing",
        ),
        (
            "bce-with-logits",
            vec!["--targets", &probs, "--ignore-index", "3"],
            "--ignore-index",
        ),
        (
            "cross-entropy",
            vec!["--targets", &labels, "--pos-weight", &pw],
            "--pos-weight",
        ),
        ("softmax", vec!["--loss-output", &loss], "--loss-output"),
        ("relu", vec!["--softcap", "3"], "--softcap"),
        ("leaky-relu", vec!["--alpha", "0.3"], "--alpha"),
    ];
    for (op, extra, flag) in cases {
        let mut args = base(op);
        args.extend(extra);
        args.extend(["--backend", "cpu"]);
        assert_refused(&args, &[flag, op], &out);
    }
    let svg = f.path("p.svg");
    assert_refused(
        &[
            "plot",
            "relu",
            "--negative-slope",
            "0.5",
            "--output",
            &svg.to_string_lossy(),
            "--backend",
            "cpu",
        ],
        &["--negative-slope", "relu"],
        &svg,
    );
    // A flag that applies to one of the ops drawn is taken.
    let o2 = run(&[
        "plot",
        "relu",
        "leaky-relu",
        "--negative-slope",
        "0.5",
        "--output",
        &svg.to_string_lossy(),
        "--backend",
        "cpu",
    ]);
    assert!(o2.status.success(), "{}", stderr(&o2));
}

#[test]
fn hardtanh_takes_infinite_bounds_and_refuses_crossed_ones_on_the_command_line() {
    let f = Files::new();
    let x = [
        -1e30f32,
        -2.0,
        -0.5,
        0.0,
        0.5,
        2.0,
        1e30,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    write_f32(&f.path("x.npy"), &x, &[x.len()]);
    for ctx in backends() {
        let b = backend_name(&ctx);
        for (lo, hi) in [("0", "inf"), ("-inf", "1"), ("-inf", "inf")] {
            let out = f.path("y.npy");
            let o = run(&[
                "run",
                "hardtanh",
                "--input",
                &f.s("x.npy"),
                "--min-val",
                lo,
                "--max-val",
                hi,
                "--output",
                &out.to_string_lossy(),
                "--backend",
                &b,
            ]);
            assert!(
                o.status.success(),
                "{b} hardtanh({lo}, {hi}): {}",
                stderr(&o)
            );
            let (lo, hi): (f32, f32) = (lo.parse().unwrap(), hi.parse().unwrap());
            let want: Vec<f32> = x.iter().map(|v| v.clamp(lo, hi)).collect();
            assert_bits(
                &format!("{b} hardtanh({lo}, {hi})"),
                &read_f32(&out).0,
                &want,
            );
        }
    }
    let out = f.path("crossed.npy");
    assert_refused(
        &[
            "run",
            "hardtanh",
            "--input",
            &f.s("x.npy"),
            "--min-val",
            "1",
            "--max-val",
            "0",
            "--output",
            &out.to_string_lossy(),
            "--backend",
            "cpu",
        ],
        &["max_val"],
        &out,
    );
}

#[test]
fn cross_entropy_takes_whole_number_float_labels_with_the_heads_options() {
    let f = Files::new();
    let (rows, cols) = (5, 9);
    write_f32(
        &f.path("x.npy"),
        &uniform(3, rows * cols, -4.0, 4.0),
        &[rows, cols],
    );
    write_npy(&f.path("int.npy"), &[0i64, 8, 3, 3, 5], &[rows], "<i8");
    write_f32(&f.path("float.npy"), &[0.0, 8.0, 3.0, 3.0, 5.0], &[rows]);
    write_npy(
        &f.path("double.npy"),
        &[0.0f64, 8.0, 3.0, 3.0, 5.0],
        &[rows],
        "<f8",
    );
    let head = ["--softcap", "15", "--lse-square-scale", "1e-3"];
    let mut outputs = Vec::new();
    for labels in ["int.npy", "float.npy", "double.npy"] {
        let (grad, loss) = (
            f.path(&format!("g-{labels}")),
            f.path(&format!("l-{labels}")),
        );
        let (x, t) = (f.s("x.npy"), f.s(labels));
        let mut args = vec!["run", "cross-entropy", "--input", &x, "--targets", &t];
        let (g, l) = (grad.to_string_lossy(), loss.to_string_lossy());
        args.extend(["--output", &g, "--loss-output", &l, "--backend", "cpu"]);
        args.extend(head);
        let o = run(&args);
        assert!(o.status.success(), "{labels}: {}", stderr(&o));
        outputs.push((read_f32(&grad).0, read_f32(&loss).0));
    }
    for (i, o) in outputs.iter().enumerate().skip(1) {
        assert_bits(&format!("grad {i}"), &o.0, &outputs[0].0);
        assert_bits(&format!("loss {i}"), &o.1, &outputs[0].1);
    }
}

/// `[n, k]` row-major values of a seeded uniform, widened.
fn wide(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

#[test]
fn linear_and_the_fused_linear_cross_entropy_run_against_the_cpu_reference() {
    use gpu_activations::cpu::{linear as linear_ref, loss as loss_ref};
    let f = Files::new();
    let (n, h, k) = (6, 7, 5);
    let x = uniform(11, n * h, -1.0, 1.0);
    let w = uniform(12, k * h, -1.0, 1.0);
    let bias = uniform(13, k, -0.5, 0.5);
    let g = uniform(14, n * k, -1.0, 1.0);
    let class_weight = uniform(15, k, 0.5, 1.5);
    let labels: Vec<i64> = vec![0, 4, 2, -100, 1, 3];
    write_f32(&f.path("x.npy"), &x, &[n, h]);
    write_f32(&f.path("w.npy"), &w, &[k, h]);
    write_f32(&f.path("b.npy"), &bias, &[k]);
    write_f32(&f.path("g.npy"), &g, &[n, k]);
    write_f32(&f.path("cw.npy"), &class_weight, &[k]);
    write_npy(&f.path("t.npy"), &labels, &[n], "<i8");
    let (tol_a, tol_r) = (1e-5, 1e-5);
    let y_want = linear_ref::forward(&wide(&x), &wide(&w), Some(&wide(&bias)), n, h, k);
    let (dx_want, dw_want, db_want) =
        linear_ref::backward(&wide(&x), &wide(&w), &wide(&g), n, h, k);
    let z = linear_ref::forward(&wide(&x), &wide(&w), Some(&wide(&bias)), n, h, k);
    let head = loss_ref::cross_entropy_head(
        &z,
        k,
        &labels,
        &CrossEntropyOptions {
            weight: Some(class_weight.clone()),
            label_smoothing: 0.1,
            ..Default::default()
        },
        &HeadOptions {
            lse_square_scale: 1e-3,
            softcap: Some(4.0),
        },
    );
    let (hdx, hdw, hdb) = linear_ref::backward(&wide(&x), &wide(&w), &head.grad, n, h, k);
    for ctx in backends() {
        let b = backend_name(&ctx);
        let o = run(&[
            "run",
            "linear",
            "--input",
            &f.s("x.npy"),
            "--weight",
            &f.s("w.npy"),
            "--bias",
            &f.s("b.npy"),
            "--output",
            &f.s("y.npy"),
            "--backend",
            &b,
        ]);
        assert!(o.status.success(), "{b} linear: {}", stderr(&o));
        let (y, shape) = read_f32(&f.path("y.npy"));
        assert_eq!(shape, [n, k]);
        common::assert_all_close(&format!("{b} linear"), &y, &y_want, &[], tol_a, tol_r);

        let o = run(&[
            "run",
            "linear-backward",
            "--input",
            &f.s("x.npy"),
            "--weight",
            &f.s("w.npy"),
            "--grad-output",
            &f.s("g.npy"),
            "--output",
            &f.s("dx.npy"),
            "--weight-grad-output",
            &f.s("dw.npy"),
            "--bias-grad-output",
            &f.s("db.npy"),
            "--backend",
            &b,
        ]);
        assert!(o.status.success(), "{b} linear-backward: {}", stderr(&o));
        for (file, want) in [
            ("dx.npy", &dx_want),
            ("dw.npy", &dw_want),
            ("db.npy", &db_want),
        ] {
            let got = read_f32(&f.path(file)).0;
            common::assert_all_close(&format!("{b} linear {file}"), &got, want, &[], tol_a, tol_r);
        }

        let o = run(&[
            "run",
            "linear-cross-entropy",
            "--input",
            &f.s("x.npy"),
            "--weight",
            &f.s("w.npy"),
            "--bias",
            &f.s("b.npy"),
            "--targets",
            &f.s("t.npy"),
            "--class-weight",
            &f.s("cw.npy"),
            "--label-smoothing",
            "0.1",
            "--lse-square-scale",
            "1e-3",
            "--softcap",
            "4",
            "--output",
            &f.s("hdx.npy"),
            "--weight-grad-output",
            &f.s("hdw.npy"),
            "--bias-grad-output",
            &f.s("hdb.npy"),
            "--loss-output",
            &f.s("loss.npy"),
            "--lse-output",
            &f.s("lse.npy"),
            "--z-loss-output",
            &f.s("z.npy"),
            "--backend",
            &b,
        ]);
        assert!(
            o.status.success(),
            "{b} linear-cross-entropy: {}",
            stderr(&o)
        );
        for (file, want) in [
            ("hdx.npy", &hdx),
            ("hdw.npy", &hdw),
            ("hdb.npy", &hdb),
            ("loss.npy", &head.loss),
            ("lse.npy", &head.lse),
            ("z.npy", &head.z_loss),
        ] {
            let got = read_f32(&f.path(file)).0;
            common::assert_all_close(&format!("{b} lce {file}"), &got, want, &[], tol_a, tol_r);
        }
    }
}

#[test]
fn sizes_beyond_the_adapter_or_the_host_are_refused_before_anything_is_allocated() {
    let out = PathBuf::from("/nonexistent-output-never-written");
    for b in ["cpu".to_string()]
        .into_iter()
        .chain(common::gpus().iter().take(1).map(backend_name))
    {
        for shape in [
            "1099511627776,1024",
            "18446744073709551615,2",
            "100000000000,100000000000",
        ] {
            assert_refused(
                &[
                    "bench",
                    "--op",
                    "softmax",
                    "--shape",
                    shape,
                    "--runs",
                    "1",
                    "--backend",
                    &b,
                ],
                &["--shape"],
                &out,
            );
        }
        for (rows, cols) in [("100000", "100000"), ("18446744073709551615", "2")] {
            assert_refused(
                &["demo", "--rows", rows, "--cols", cols, "--backend", &b],
                &["--rows"],
                &out,
            );
        }
    }
    for args in [
        vec!["demo", "--rows", "0", "--backend", "cpu"],
        vec!["demo", "--cols", "0", "--backend", "cpu"],
        vec![
            "bench",
            "--op",
            "relu",
            "--shape",
            "8",
            "--runs",
            "0",
            "--backend",
            "cpu",
        ],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(args[args.len() - 3]),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn train_finds_its_digits_wherever_it_is_run_from() {
    let dir = workdir();
    let o = bin()
        .current_dir(dir.path())
        .args(["train", "--epochs", "2", "--backend", "cpu"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["train", "--data", "/no/such/digits.csv", "--backend", "cpu"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--data") && stderr(&o).contains("digits.csv"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn messages_name_the_op_and_the_file_at_fault() {
    let f = Files::new();
    write_f32(&f.path("x.npy"), &uniform(1, 6, -1.0, 1.0), &[2, 3]);
    write_f32(&f.path("x1.npy"), &uniform(1, 3, -1.0, 1.0), &[3]);
    write_f32(&f.path("fractional.npy"), &[0.5, 1.0], &[2]);
    write_f32(&f.path("slopes.npy"), &[0.1; 4], &[4]);
    write_f32(&f.path("labels3.npy"), &[0.0, 1.0, 2.0], &[3]);
    std::fs::write(
        f.path("header.npy"),
        b"\x93NUMPY\x01\x00\x1e\x00{'descr': '<f4', 'fortran_ord\n\n",
    )
    .unwrap();
    let out = f.path("out.npy");
    let o = out.to_string_lossy().into_owned();
    let x = f.s("x.npy");
    let with = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend([
            "--output".into(),
            o.clone(),
            "--backend".into(),
            "cpu".into(),
        ]);
        all
    };
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            with(&[
                "run",
                "nll-loss",
                "--input",
                &x,
                "--targets",
                &f.s("fractional.npy"),
            ]),
            vec!["fractional.npy", "nll"],
        ),
        (
            with(&[
                "run",
                "prelu",
                "--input",
                &x,
                "--weight",
                &f.s("slopes.npy"),
            ]),
            vec!["slopes.npy", "prelu"],
        ),
        (
            with(&[
                "run",
                "cross-entropy-dim1",
                "--input",
                &f.s("x1.npy"),
                "--targets",
                &f.s("labels3.npy"),
            ]),
            vec!["x1.npy", "rank"],
        ),
        (
            with(&["run", "relu", "--input", &f.s("header.npy")]),
            vec!["header.npy"],
        ),
    ];
    for (args, words) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(&args, &words, &out);
        if words.contains(&"nll") {
            assert!(!stderr(&run(&args)).contains("cross_entropy"), "{args:?}");
        }
    }
    // Backends this system does not have say which systems do; the browser's is refused.
    #[cfg(target_os = "linux")]
    for (backend, system) in [
        ("metal", "macOS"),
        ("dx12", "Windows"),
        ("webgpu", "browser"),
    ] {
        let o = run(&["info", "--backend", backend]);
        assert!(!o.status.success(), "{backend}");
        let err = stderr(&o);
        assert!(
            err.contains(system) && !err.contains("apt-get"),
            "{backend}: {err}"
        );
    }
    let o = run(&["plot", "--help"]);
    let usage = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        usage.contains("[OPS]..."),
        "plot's ops are optional: {usage}"
    );
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    use std::process::Stdio;
    for args in [
        vec!["info", "--backend", "cpu"],
        vec!["check", "--backend", "cpu"],
    ] {
        let mut child = bin()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{args:?}: {:?} {err}", o.status);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn the_third_waves_activations_run_check_bench_and_plot() {
    let f = Files::new();
    let x = uniform(21, 64, -6.0, 6.0);
    write_f32(&f.path("x.npy"), &x, &[64]);
    for op in ["quick-gelu", "squared-relu"] {
        let o = run(&[
            "run",
            op,
            "--input",
            &f.s("x.npy"),
            "--output",
            &f.s("y.npy"),
            "--backend",
            "cpu",
        ]);
        assert!(o.status.success(), "{op}: {}", stderr(&o));
        let act: Activation = op.parse().unwrap();
        let want: Vec<f32> = x
            .iter()
            .map(|&v| act.reference(f64::from(v)) as f32)
            .collect();
        assert_bits(op, &read_f32(&f.path("y.npy")).0, &want);
    }
    let o = run(&[
        "plot",
        "quick-gelu",
        "squared-relu",
        "--output",
        &f.s("p.svg"),
        "--backend",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&[
        "bench",
        "--op",
        "quick-gelu",
        "--op",
        "squared-relu-backward",
        "--shape",
        "4096",
        "--runs",
        "1",
        "--warmup",
        "1",
        "--backend",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("quick-gelu") && text.contains("squared-relu-backward"),
        "{text}"
    );
}

/// PyTorch's case `wave3/head_stats/NAME`, its directory.
fn head_stats_fixture(name: &str) -> PathBuf {
    common::fixtures().join("wave3/head_stats").join(name)
}

#[test]
fn head_stats_run_against_pytorch_and_the_library_on_every_backend() {
    let f = Files::new();
    let d = head_stats_fixture("small_T0.5");
    let file = |n: &str| d.join(n).to_string_lossy().into_owned();
    let (z, shape) = read_f32(&d.join("logits.npy"));
    let labels: Vec<i64> = common::npy(&d.join("targets.npy"))
        .0
        .iter()
        .map(|&v| v as i64)
        .collect();
    let options = gpu_activations::HeadStats {
        temperature: 0.5,
        ..Default::default()
    };
    for ctx in backends() {
        let b = backend_name(&ctx);
        let o = run(&[
            "run",
            "head-stats",
            "--backend",
            &b,
            "--input",
            &file("logits.npy"),
            "--targets",
            &file("targets.npy"),
            "--temperature",
            "0.5",
            "--logp-output",
            &f.s("logp.npy"),
            "--entropy-output",
            &f.s("entropy.npy"),
            "--lse-output",
            &f.s("lse.npy"),
        ]);
        assert!(o.status.success(), "{b}: {}", stderr(&o));
        let zt = Tensor::from_slice(&ctx, &z, &shape).unwrap();
        let lib = zt.head_stats(Targets::Indices(&labels), &options).unwrap();
        for (what, t) in [
            ("logp", &lib.logp),
            ("entropy", &lib.entropy),
            ("lse", &lib.lse),
        ] {
            let (got, got_shape) = read_f32(&f.path(&format!("{what}.npy")));
            assert_eq!(got_shape, [12], "{b} {what}");
            assert_bits(&format!("{b} {what}"), &got, &t.to_vec().unwrap());
            let want = common::npy(&d.join(format!("{what}.npy"))).0;
            common::assert_all_close(
                &format!("{b} {what} vs PyTorch"),
                &got,
                &want,
                &[],
                1e-6,
                1e-5,
            );
        }
        let o = run(&[
            "run",
            "head-stats-backward",
            "--backend",
            &b,
            "--input",
            &file("logits.npy"),
            "--targets",
            &file("targets.npy"),
            "--temperature",
            "0.5",
            "--grad-logp",
            &file("grad_logp.npy"),
            "--grad-entropy",
            &file("grad_entropy.npy"),
            "--output",
            &f.s("grad.npy"),
        ]);
        assert!(o.status.success(), "{b}: {}", stderr(&o));
        let (got, got_shape) = read_f32(&f.path("grad.npy"));
        assert_eq!(got_shape, shape, "{b}");
        let want = common::npy(&d.join("grad_logits.npy")).0;
        common::assert_all_close(
            &format!("{b} grad vs PyTorch"),
            &got,
            &want,
            &[],
            1e-6,
            1e-5,
        );
        let a = Tensor::from_slice(&ctx, &read_f32(&d.join("grad_logp.npy")).0, &[12]).unwrap();
        let c = Tensor::from_slice(&ctx, &read_f32(&d.join("grad_entropy.npy")).0, &[12]).unwrap();
        let g = zt
            .head_stats_backward(Targets::Indices(&labels), &lib, Some(&a), Some(&c))
            .unwrap();
        assert_bits(&format!("{b} grad"), &got, &g.to_vec().unwrap());
        // The linear head: X·Wᵀ + B's statistics, as the library gives them.
        let (n, h, k) = (9, 6, 11);
        let x = uniform(81, n * h, -1.0, 1.0);
        let w = uniform(82, k * h, -1.0, 1.0);
        let bias = uniform(83, k, -0.5, 0.5);
        let lab: Vec<i64> = (0..n as i64).map(|r| (r * 4) % k as i64).collect();
        write_f32(&f.path("x.npy"), &x, &[n, h]);
        write_f32(&f.path("w.npy"), &w, &[k, h]);
        write_f32(&f.path("b.npy"), &bias, &[k]);
        write_npy(&f.path("lab.npy"), &lab, &[n], "<i8");
        let o = run(&[
            "run",
            "linear-head",
            "--backend",
            &b,
            "--input",
            &f.s("x.npy"),
            "--weight",
            &f.s("w.npy"),
            "--bias",
            &f.s("b.npy"),
            "--targets",
            &f.s("lab.npy"),
            "--temperature",
            "1.5",
            "--logp-output",
            &f.s("lh.npy"),
        ]);
        assert!(o.status.success(), "{b}: {}", stderr(&o));
        let xt = Tensor::from_slice(&ctx, &x, &[n, h]).unwrap();
        let wt = Tensor::from_slice(&ctx, &w, &[k, h]).unwrap();
        let bt = Tensor::from_slice(&ctx, &bias, &[k]).unwrap();
        let warm = gpu_activations::HeadStats {
            temperature: 1.5,
            ..Default::default()
        };
        let lib = xt
            .linear_head(&wt, Some(&bt), Targets::Indices(&lab), &warm)
            .unwrap();
        assert_bits(
            &format!("{b} linear-head"),
            &read_f32(&f.path("lh.npy")).0,
            &lib.logp.to_vec().unwrap(),
        );
    }
}

#[test]
fn head_stats_bad_input_is_one_line_and_writes_nothing() {
    let f = Files::new();
    let d = head_stats_fixture("small_T0.5");
    let file = |n: &str| d.join(n).to_string_lossy().into_owned();
    let (logits, targets) = (file("logits.npy"), file("targets.npy"));
    let out = f.path("out.npy");
    let o = f.s("out.npy");
    let forward = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "run",
            "head-stats",
            "--backend",
            "cpu",
            "--input",
            &logits,
            "--targets",
            &targets,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let check = |args: Vec<String>, words: &[&str]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(&args, words, &out);
    };
    for t in ["0", "-1", "nan", "inf"] {
        check(
            forward(&["--temperature", t, "--logp-output", &o]),
            &["temperature"],
        );
    }
    check(
        forward(&["--softcap", "0", "--lse-output", &o]),
        &["softcap"],
    );
    check(
        forward(&["--output", &o]),
        &["--output", "head-stats", "--logp-output"],
    );
    check(forward(&[]), &["head-stats", "--logp-output"]);
    check(
        forward(&["--dim", "0", "--lse-output", &o]),
        &["--dim", "head-stats"],
    );
    check(
        forward(&["--grad-logp", &logits, "--lse-output", &o]),
        &["--grad-logp", "head-stats"],
    );
    // Targets out of range, or of the wrong shape: the targets file is named.
    let bad = f.path("bad.npy");
    write_npy(
        &bad,
        &[0i64, 37, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        &[12],
        "<i8",
    );
    let mut args = forward(&["--lse-output", &o]);
    args[7] = bad.to_string_lossy().into_owned();
    check(args, &["bad.npy", "37"]);
    // The backward: upstream gradients of the wrong shape name their file; a z-loss at T ≠ 1 is
    // refused as a combination.
    for (flag, name) in [
        ("--grad-logp", "logits.npy"),
        ("--grad-entropy", "logits.npy"),
    ] {
        let args: Vec<&str> = vec![
            "run",
            "head-stats-backward",
            "--backend",
            "cpu",
            "--input",
            &logits,
            "--targets",
            &targets,
            flag,
            &logits,
            "--output",
            &o,
        ];
        assert_refused(&args, &[name, "[12]"], &out);
    }
    let args = [
        "run",
        "head-stats-backward",
        "--backend",
        "cpu",
        "--input",
        &logits,
        "--targets",
        &targets,
        "--temperature",
        "0.5",
        "--lse-square-scale",
        "0.01",
        "--output",
        &o,
    ];
    assert_refused(&args, &["lse_square_scale", "temperature"], &out);
    let args = [
        "run",
        "head-stats-backward",
        "--backend",
        "cpu",
        "--input",
        &logits,
        "--targets",
        &targets,
    ];
    assert_refused(&args, &["head-stats-backward", "--output"], &out);
}

#[test]
fn head_stats_and_the_linear_head_are_checked_and_benchmarked() {
    let f = Files::new();
    for ctx in common::gpus() {
        let b = backend_name(ctx);
        let o = run(&["check", "--backend", &b]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(o.status.success(), "{b}: {}", stderr(&o));
        for op in [
            "head-stats T=0.7 logp",
            "head-stats-backward softcap+z-loss",
            "linear-head dw",
        ] {
            assert!(out.contains(op), "{b}: check has no {op}");
        }
        let json = f.path(&format!("head-{b}.json"));
        let o = run(&[
            "bench",
            "--backend",
            &b,
            "--op",
            "linear-head",
            "--op",
            "head-stats",
            "--op",
            "head-stats-backward",
            "--shape",
            "70,33,65",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--json",
            &json.to_string_lossy(),
        ]);
        assert!(o.status.success(), "{b}: {}", stderr(&o));
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let m = &doc["linear_head"][0];
        assert_eq!(m["shape"], serde_json::json!([70, 33, 65]), "{b}");
        let inputs = 4 * (70 * 33 + 65 * 33 + 65);
        assert_eq!(
            m["budget_bytes"],
            2 * inputs + 4 * 8 * 70 + (64 << 20),
            "{b}: {m}"
        );
        for key in ["fused_peak_bytes", "materialised_peak_bytes"] {
            assert!(
                m[key].as_u64().is_some_and(|v| v >= inputs),
                "{b} {key}: {m}"
            );
        }
        for key in [
            "fused_forward_ms",
            "materialised_forward_ms",
            "forward_speedup",
            "fused_step_ms",
            "materialised_step_ms",
            "step_speedup",
        ] {
            assert!(m[key].as_f64().is_some_and(|v| v > 0.0), "{b} {key}: {m}");
        }
        let ops: Vec<&str> = doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["op"].as_str())
            .collect();
        assert!(
            ops.contains(&"head-stats") && ops.contains(&"head-stats-backward"),
            "{b}: {ops:?}"
        );
    }
}
