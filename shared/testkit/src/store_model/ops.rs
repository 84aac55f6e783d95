//! What a case is made of: steps over a small pool of request ids, jtis and lifetimes, drawn by
//! proptest, and how they read in a failure report.

use std::fmt;

use ciba_shared::domain::DeliveryMode;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

/// The request ids a case draws from: few, so that operations keep meeting on one request.
/// `t1.r1` is shaped as bc-authorize mints ids (`<txn>.<secret>`), the others are not: both ways
/// of storing a request are exercised.
pub const REQUEST_IDS: [&str; 3] = ["r0", "t1.r1", "r2"];
/// The `jti`s a case draws from, in either scope (request objects', decisions').
pub const JTIS: [&str; 4] = ["j0", "j1", "j2", "j3"];
/// Steps in one case at most.
const MAX_STEPS: usize = 30;
/// The longest clock advance of one step.
const MAX_ADVANCE_SECS: i64 = 90;

/// One `jti`, and how long its use lasts.
#[derive(Clone, Copy, Debug)]
pub struct JtiDraw {
    pub index: usize,
    pub ttl: i64,
}

/// One store operation, on the request `REQUEST_IDS[req]` where it names one.
#[derive(Clone, Debug)]
pub enum Op {
    Create {
        req: usize,
        mode: DeliveryMode,
        ttl: i64,
        interval: i64,
        jti: Option<JtiDraw>,
    },
    /// Discards the request as it was last created, with its request object's `jti`.
    Discard {
        req: usize,
    },
    Poll {
        req: usize,
    },
    Decide {
        req: usize,
        approve: bool,
        jti: JtiDraw,
    },
    /// Redeems with a fresh access token and a refresh token lasting `refresh_ttl`.
    Redeem {
        req: usize,
        refresh_ttl: i64,
    },
    /// The expiry sweep (`expire_due`).
    Sweep,
    /// Rotates one of the refresh tokens ever issued for the request, or when it has none for
    /// any request (`pick` modulo their number, spent ones included), as its client or as
    /// another.
    Rotate {
        req: usize,
        pick: usize,
        other_client: bool,
        refresh_ttl: i64,
    },
}

/// One step of a case.
#[derive(Clone, Debug)]
pub enum Step {
    /// The clock moves forward.
    Advance { ms: i64 },
    /// One operation, or several on one request run at once on separate tasks.
    Run(Vec<Op>),
}

/// A case: most of the request ids created first (so that later steps meet them), then
/// steps, `MAX_STEPS` in all at most.
pub fn steps() -> impl Strategy<Value = Vec<Step>> {
    let creations: Vec<_> = (0..REQUEST_IDS.len())
        .map(|req| proptest::option::weighted(0.8, create(req).prop_map(|op| Step::Run(vec![op]))))
        .collect();
    let later = vec(step(), 0..=MAX_STEPS - REQUEST_IDS.len());
    (creations, later)
        .prop_map(|(creations, later)| creations.into_iter().flatten().chain(later).collect())
}

fn step() -> impl Strategy<Value = Step> {
    let req = || 0..REQUEST_IDS.len();
    prop_oneof![
        3 => prop_oneof![
            6 => 0..=3000i64,
            2 => 3000..=20_000i64,
            1 => 20_000..=MAX_ADVANCE_SECS * 1000,
        ]
        .prop_map(|ms| Step::Advance { ms }),
        2 => req().prop_flat_map(create).prop_map(|op| Step::Run(vec![op])),
        1 => req().prop_map(|req| Step::Run(vec![Op::Discard { req }])),
        7 => req().prop_flat_map(on_request).prop_map(|op| Step::Run(vec![op])),
        // Mostly two or three at once; one, too, so that shrinking gets there.
        4 => req()
            .prop_flat_map(|req| vec(on_request(req), 1..=3))
            .prop_map(Step::Run),
    ]
}

fn create(req: usize) -> impl Strategy<Value = Op> {
    const MODES: [DeliveryMode; 3] = [DeliveryMode::Poll, DeliveryMode::Ping, DeliveryMode::Push];
    (
        select(&MODES[..]),
        select(&[5i64, 20, 120][..]),
        select(&[1i64, 2, 5][..]),
        proptest::option::of(jti()),
    )
        .prop_map(move |(mode, ttl, interval, jti)| Op::Create {
            req,
            mode,
            ttl,
            interval,
            jti,
        })
}

/// The operations that may run at once on the request `req`.
fn on_request(req: usize) -> impl Strategy<Value = Op> {
    let refresh_ttl = || select(&[20i64, 600][..]);
    prop_oneof![
        3 => Just(Op::Poll { req }),
        4 => (proptest::bool::weighted(0.8), jti())
            .prop_map(move |(approve, jti)| Op::Decide { req, approve, jti }),
        2 => refresh_ttl().prop_map(move |refresh_ttl| Op::Redeem { req, refresh_ttl }),
        1 => Just(Op::Sweep),
        3 => (0..3usize, proptest::bool::weighted(0.2), refresh_ttl()).prop_map(
            move |(pick, other_client, refresh_ttl)| Op::Rotate {
                req,
                pick,
                other_client,
                refresh_ttl,
            }
        ),
    ]
}

fn jti() -> impl Strategy<Value = JtiDraw> {
    (0..JTIS.len(), select(&[5i64, 30, 120][..])).prop_map(|(index, ttl)| JtiDraw { index, ttl })
}

impl fmt::Display for JtiDraw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "jti {} ({} s)", JTIS[self.index], self.ttl)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = |req: &usize| REQUEST_IDS[*req];
        match self {
            Op::Create {
                req,
                mode,
                ttl,
                interval,
                jti,
            } => {
                write!(
                    f,
                    "create {} ({}, expires in {ttl} s, interval {interval} s, ",
                    id(req),
                    mode.as_str()
                )?;
                match jti {
                    Some(jti) => write!(f, "request object {jti})"),
                    None => write!(f, "no request object jti)"),
                }
            }
            Op::Discard { req } => write!(f, "discard {}", id(req)),
            Op::Poll { req } => write!(f, "poll {}", id(req)),
            Op::Decide { req, approve, jti } => {
                let decision = if *approve { "approve" } else { "deny" };
                write!(f, "decide {}: {decision} with {jti}", id(req))
            }
            Op::Redeem { req, refresh_ttl } => {
                write!(f, "redeem {} (refresh token for {refresh_ttl} s)", id(req))
            }
            Op::Sweep => write!(f, "expiry sweep"),
            Op::Rotate {
                req,
                pick,
                other_client,
                refresh_ttl,
            } => {
                write!(
                    f,
                    "rotate refresh token #{pick} of {} (successor for {refresh_ttl} s)",
                    id(req)
                )?;
                if *other_client {
                    write!(f, " as another client")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Advance { ms } => write!(f, "clock +{}.{:03} s", ms / 1000, ms % 1000),
            Step::Run(ops) if ops.len() == 1 => write!(f, "{}", ops[0]),
            Step::Run(ops) => {
                write!(f, "at once:")?;
                for (i, op) in ops.iter().enumerate() {
                    write!(f, "{} {op}", if i == 0 { "" } else { " |" })?;
                }
                Ok(())
            }
        }
    }
}
