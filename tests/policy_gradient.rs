//! The GRPO-style example (`examples/policy_gradient.rs`) trained on every backend: a linear
//! policy over fixed features, the clipped-ratio loss written on the per-token log-probabilities
//! of `linear_head`, its gradient through `linear_head_backward` and Adam, converging to each
//! context's best arm.

mod common;

#[path = "../examples/policy_gradient.rs"]
#[allow(dead_code)]
mod policy_gradient;

use policy_gradient::{Config, train};

#[test]
fn the_policy_converges_to_the_best_arm_on_every_backend() {
    for ctx in common::all_backends() {
        let case = common::label(&ctx);
        let start = std::time::Instant::now();
        let run = train(&ctx, &Config::default()).unwrap();
        let mean = |steps: &[policy_gradient::Step]| {
            steps.iter().map(|s| s.reward).sum::<f64>() / steps.len() as f64
        };
        let (first, last) = (
            mean(&run.steps[..5]),
            mean(&run.steps[run.steps.len() - 5..]),
        );
        common::report(&format!(
            "[policy_gradient] {case}: mean reward {first:.3} → {last:.3}, greedy accuracy {:.3}, \
             {:.1} s",
            run.greedy_accuracy,
            start.elapsed().as_secs_f64()
        ));
        assert!(
            run.greedy_accuracy >= 0.95,
            "{case}: the greedy arm is the best in {:.3} of the contexts",
            run.greedy_accuracy
        );
        assert!(
            last >= 0.9 && last > first + 0.3,
            "{case}: the mean reward went from {first:.3} to {last:.3}"
        );
        let entropies: Vec<f64> = run.steps.iter().map(|s| s.entropy).collect();
        assert!(
            entropies[entropies.len() - 1] < entropies[0],
            "{case}: the policy's entropy did not fall: {entropies:?}"
        );
    }
}
