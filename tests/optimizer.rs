//! SGD and Adam on the device against the update rules written out in f64 here, over several
//! steps (Adam's bias corrections change with each), with the L2 term, on every backend.

mod common;

use common::{all_backends, assert_all_close, label, uniform};
use gpu_activations::{Adam, AdamState, Error, Sgd, Tensor};

#[test]
fn adam_and_sgd_follow_their_update_rules() {
    let n = 37;
    let theta0 = uniform(140, n, -1.0, 1.0);
    let grads: Vec<Vec<f32>> = (0..4).map(|s| uniform(141 + s, n, -0.5, 0.5)).collect();
    let adam = Adam {
        lr: 0.05,
        weight_decay: 0.01,
        ..Default::default()
    };
    // The reference: Kingma & Ba with g ← g + λθ.
    let mut theta: Vec<f64> = theta0.iter().map(|&v| f64::from(v)).collect();
    let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
    for (t, g) in grads.iter().enumerate() {
        let t = t as i32 + 1;
        for i in 0..n {
            let gi = f64::from(g[i]) + 0.01 * theta[i];
            m[i] = 0.9 * m[i] + 0.1 * gi;
            v[i] = 0.999 * v[i] + 0.001 * gi * gi;
            let m_hat = m[i] / (1.0 - 0.9f64.powi(t));
            let v_hat = v[i] / (1.0 - 0.999f64.powi(t));
            theta[i] -= 0.05 * m_hat / (v_hat.sqrt() + 1e-8);
        }
    }
    let mut sgd_theta: Vec<f64> = theta0.iter().map(|&v| f64::from(v)).collect();
    for g in &grads {
        for i in 0..n {
            sgd_theta[i] -= 0.1 * (f64::from(g[i]) + 0.01 * sgd_theta[i]);
        }
    }
    for ctx in all_backends() {
        let p = Tensor::from_slice(&ctx, &theta0, &[n]).unwrap();
        let q = Tensor::from_slice(&ctx, &theta0, &[n]).unwrap();
        let mut state = AdamState::new(&p).unwrap();
        for g in &grads {
            let gt = Tensor::from_slice(&ctx, g, &[n]).unwrap();
            adam.step(&p, &gt, &mut state).unwrap();
            Sgd {
                lr: 0.1,
                weight_decay: 0.01,
            }
            .step(&q, &gt)
            .unwrap();
        }
        assert_all_close(
            &format!("{} adam", label(&ctx)),
            &p.to_vec().unwrap(),
            &theta,
            &[],
            1e-6,
            1e-5,
        );
        assert_all_close(
            &format!("{} sgd", label(&ctx)),
            &q.to_vec().unwrap(),
            &sgd_theta,
            &[],
            1e-6,
            1e-5,
        );
        // A learning rate that is NaN, a β of 1 and a gradient of another shape are typed errors.
        let g = Tensor::from_slice(&ctx, &grads[0], &[n]).unwrap();
        let bad = Adam {
            lr: f32::NAN,
            ..Default::default()
        };
        assert!(matches!(
            bad.step(&p, &g, &mut state),
            Err(Error::InvalidParameter { .. })
        ));
        let bad = Adam {
            beta1: 1.0,
            ..Default::default()
        };
        assert!(matches!(
            bad.step(&p, &g, &mut state),
            Err(Error::InvalidParameter { .. })
        ));
        let short = Tensor::from_slice(&ctx, &grads[0][..8], &[8]).unwrap();
        let e = Sgd {
            lr: 0.1,
            weight_decay: 0.0,
        }
        .step(&p, &short)
        .unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    }
}

#[test]
fn a_bad_parameter_is_named_as_given_with_its_own_rule() {
    for ctx in common::all_backends() {
        let p = Tensor::from_slice(&ctx, &[1.0; 8], &[8]).unwrap();
        let g = Tensor::from_slice(&ctx, &[0.5; 8], &[8]).unwrap();
        let sgd = |lr: f32, weight_decay: f32| {
            Sgd { lr, weight_decay }
                .step(&p, &g)
                .unwrap_err()
                .to_string()
        };
        let message = sgd(f32::INFINITY, 0.0);
        assert!(message.contains("lr = inf"), "{message}");
        assert!(!message.contains("beta"), "SGD has no betas: {message}");
        let message = sgd(0.1, -0.1);
        assert!(
            message.contains("weight_decay = -0.1 is invalid"),
            "{message}"
        );
        let mut state = AdamState::new(&p).unwrap();
        let message = Adam {
            beta1: 1.1,
            ..Default::default()
        }
        .step(&p, &g, &mut state)
        .unwrap_err()
        .to_string();
        assert!(message.contains("beta1 = 1.1 is invalid"), "{message}");
        assert!(message.contains("[0, 1)"), "{message}");
    }
}
