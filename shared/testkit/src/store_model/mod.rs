//! A model-based test of the store (issue 12, "Nothing lost"). proptest draws random
//! interleavings of creation, discarding, polls, decisions, redemptions, expiry sweeps and
//! refresh token rotations over a few request ids and `jti`s, with a clock that only moves
//! forward; some steps run two or three operations on one request at once, on a multi-thread
//! runtime. Each case runs on a fresh store, and after every step:
//!
//! - the answers keep the rules (`rules`) in whatever order concurrent calls took: exactly one
//!   redemption per approved request, +`SLOW_DOWN_STEP_SECS` per early poll, one use per `jti`
//!   (request objects' at creation, decisions' at decision), one decision per request, a
//!   refresh token spent once;
//! - some order of the step's calls gives the same answers in the reference model (`model`)
//!   and leaves what the store then holds (each touched request by id and by `txn`, each
//!   touched token): nothing lost, nothing made up. At the end every request id and every
//!   token ever issued is compared.
//!
//! A failure reports the smallest sequence of steps proptest found that breaks a rule or the
//! model. `PROPTEST_CASES` overrides the number of cases the caller asks for, and
//! `PROPTEST_MAX_SHRINK_ITERS` the shrinking effort.

mod holdings;
mod model;
mod ops;
mod rules;
mod run;

use std::cell::RefCell;
use std::fmt::Write;
use std::future::Future;
use std::sync::Arc;

use ciba_shared::store::Store;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

use ops::Step;

/// Shrinking attempts after a failure unless `PROPTEST_MAX_SHRINK_ITERS` says otherwise.
const DEFAULT_MAX_SHRINK_ITERS: u32 = 1024;

/// Runs `cases` cases of the model test (unless `PROPTEST_CASES` says otherwise), each on a
/// fresh store from `make`; panics with the smallest failing sequence found. When `make` gives
/// no store (its backend is not configured), returns at once.
pub fn check<F, Fut>(cases: u32, make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<Arc<dyn Store>>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let Some(first) = runtime.block_on(make()) else {
        return;
    };
    let unused = RefCell::new(Some(first));
    let mut runner = TestRunner::new(config(cases));
    let result = runner.run(&ops::steps(), |steps| {
        let store = match unused.borrow_mut().take() {
            Some(store) => store,
            None => runtime
                .block_on(make())
                .expect("the store's backend went away"),
        };
        runtime
            .block_on(run_case(store, &steps))
            .map_err(TestCaseError::fail)
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, _)) => {
            panic!("store model: the smallest failing sequence found\n{reason}")
        }
        Err(TestError::Abort(reason)) => panic!("store model: aborted: {reason}"),
    }
}

fn config(cases: u32) -> Config {
    let unset = |name: &str| std::env::var_os(name).is_none();
    let default = Config::default();
    Config {
        cases: if unset("PROPTEST_CASES") {
            cases
        } else {
            default.cases
        },
        max_shrink_iters: if unset("PROPTEST_MAX_SHRINK_ITERS") {
            DEFAULT_MAX_SHRINK_ITERS
        } else {
            default.max_shrink_iters
        },
        // The report prints the failing sequence; nothing is written into the source tree.
        failure_persistence: None,
        ..default
    }
}

/// Runs `steps` on `store`; `Err` is the report: the steps up to the one that broke something,
/// and what it broke.
async fn run_case(store: Arc<dyn Store>, steps: &[Step]) -> Result<(), String> {
    let mut case = run::Case::new(store);
    for (i, step) in steps.iter().enumerate() {
        if let Err(broken) = case.step(step).await {
            let at = format!("step {} broke it:\n{broken}", i + 1);
            return Err(report(&steps[..=i], &at));
        }
    }
    case.finish()
        .await
        .map_err(|broken| report(steps, &format!("after the last step:\n{broken}")))
}

fn report(steps: &[Step], broken: &str) -> String {
    let mut out = String::new();
    for (i, step) in steps.iter().enumerate() {
        let _ = writeln!(out, "  {:>2}. {step}", i + 1);
    }
    out + broken
}
