//! The rules no interleaving may break, checked on what the store answered alone, before and
//! apart from the model: they hold whatever order concurrent calls took, so a step's calls are
//! judged together, and a broken rule is reported by its name.

use std::collections::{BTreeMap, BTreeSet};

use ciba_shared::domain::Decision;
use ciba_shared::protocol::SLOW_DOWN_STEP_SECS;
use ciba_shared::store::PollOutcome;

use super::model::{Call, Outcome};

/// What the rules remember of the current creation of a request id.
#[derive(Debug)]
struct Life {
    interval: i64,
    decisions: usize,
    approved: bool,
    redemptions: usize,
}

/// The answers seen so far, as far as the rules need them.
#[derive(Debug, Default)]
pub struct Rules {
    requests: BTreeMap<String, Life>,
    /// Accepted `jti` uses by (scope, jti): until when they last.
    jtis: BTreeMap<(String, String), i64>,
    /// Refresh tokens spent by a rotation.
    spent: BTreeSet<String>,
}

/// A step's calls, each with the store's answer.
type Answers<'a> = [(&'a Call, &'a Outcome)];

impl Rules {
    /// Checks one step's calls and their answers (in any order the step may have taken), then
    /// remembers them.
    pub fn check(&mut self, calls: &[Call], outcomes: &[Outcome]) -> Result<(), String> {
        let answers: Vec<_> = calls.iter().zip(outcomes).collect();
        for (call, outcome) in &answers {
            if let (Call::Create { request, .. }, Outcome::Created) = (call, outcome) {
                let life = Life {
                    interval: request.interval,
                    decisions: 0,
                    approved: false,
                    redemptions: 0,
                };
                self.requests.insert(request.auth_req_id.clone(), life);
                // A new life of the id: its decisions' jtis start over.
                let decided_here = format!("@{}", request.auth_req_id);
                self.jtis
                    .retain(|(scope, _), _| !scope.ends_with(&decided_here));
            }
        }
        self.one_use_per_jti(&answers)?;
        self.one_decision_per_request(&answers)?;
        self.one_redemption_per_approved_request(&answers)?;
        self.slow_down_step_per_early_poll(&answers)?;
        self.refresh_token_is_spent_once(&answers)?;
        for (call, outcome) in &answers {
            if let (Call::Discard { request, jti }, Outcome::Discarded) = (call, outcome) {
                self.requests.remove(&request.auth_req_id);
                if let Some(jti) = jti {
                    self.jtis.remove(&(jti.scope.clone(), jti.jti.clone()));
                }
            }
        }
        Ok(())
    }

    fn life(&mut self, id: &str) -> Result<&mut Life, String> {
        self.requests.get_mut(id).ok_or_else(|| {
            format!("rule broken: nothing lost: {id} was answered for but never created")
        })
    }

    /// A request object `jti` (at creation) is accepted once while it lasts, and a decision
    /// `jti` once per request it decides (a decision names its request).
    fn one_use_per_jti(&mut self, answers: &Answers) -> Result<(), String> {
        for (call, outcome) in answers {
            let (scope, jti, now) = match (call, outcome) {
                (
                    Call::Create {
                        request,
                        jti: Some(jti),
                    },
                    Outcome::Created,
                ) => (jti.scope.clone(), jti, request.created_at),
                (Call::Decide { id, jti, now, .. }, Outcome::Decided) => {
                    (format!("{}@{id}", jti.scope), jti, *now)
                }
                _ => continue,
            };
            let key = (scope, jti.jti.clone());
            if let Some(until) = self.jtis.get(&key)
                && *until >= now
            {
                return Err(format!(
                    "rule broken: one use per jti: {}/{} was accepted again at {now}, while its \
                     use lasts until {until}",
                    jti.scope, jti.jti
                ));
            }
            self.jtis.insert(key, jti.expires_at);
        }
        Ok(())
    }

    fn one_decision_per_request(&mut self, answers: &Answers) -> Result<(), String> {
        for (call, outcome) in answers {
            if let (Call::Decide { id, decision, .. }, Outcome::Decided) = (call, outcome) {
                let life = self.life(id)?;
                life.decisions += 1;
                life.approved |= *decision == Decision::Approve;
                if life.decisions > 1 {
                    return Err(format!(
                        "rule broken: one decision per request: {id} was decided {} times",
                        life.decisions
                    ));
                }
            }
        }
        Ok(())
    }

    /// A redemption succeeds only after an approval (in this step or before) and only once.
    fn one_redemption_per_approved_request(&mut self, answers: &Answers) -> Result<(), String> {
        for (call, outcome) in answers {
            if let (Call::Redeem { id, .. }, Outcome::Redeemed) = (call, outcome) {
                let life = self.life(id)?;
                life.redemptions += 1;
                if !life.approved {
                    return Err(format!(
                        "rule broken: exactly one redemption per approved request: {id} was \
                         redeemed without being approved"
                    ));
                }
                if life.redemptions > 1 {
                    return Err(format!(
                        "rule broken: exactly one redemption per approved request: {id} was \
                         redeemed {} times",
                        life.redemptions
                    ));
                }
            }
        }
        Ok(())
    }

    /// Each poll answered too soon adds exactly `SLOW_DOWN_STEP_SECS` to the interval: the
    /// intervals a step's early polls of a request answered are the next ones in that sequence.
    fn slow_down_step_per_early_poll(&mut self, answers: &Answers) -> Result<(), String> {
        let mut too_soon: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for (call, outcome) in answers {
            if let (Call::Poll { id, .. }, Outcome::Polled(PollOutcome::TooSoon { interval })) =
                (call, outcome)
            {
                too_soon.entry(id).or_default().push(*interval);
            }
        }
        for (id, mut intervals) in too_soon {
            let life = self.life(id)?;
            intervals.sort_unstable();
            let expected: Vec<i64> = (1..=intervals.len() as i64)
                .map(|k| life.interval + k * SLOW_DOWN_STEP_SECS)
                .collect();
            if intervals != expected {
                return Err(format!(
                    "rule broken: +{SLOW_DOWN_STEP_SECS} s per early poll: {id}'s interval was \
                     {} s and its early polls answered {intervals:?}, not {expected:?}",
                    life.interval
                ));
            }
            life.interval = expected.last().copied().unwrap_or(life.interval);
        }
        Ok(())
    }

    fn refresh_token_is_spent_once(&mut self, answers: &Answers) -> Result<(), String> {
        for (call, outcome) in answers {
            if let (Call::Rotate { hash, .. }, Outcome::Rotated) = (call, outcome)
                && !self.spent.insert(hash.clone())
            {
                return Err(format!(
                    "rule broken: a refresh token is spent once: {hash} was rotated again"
                ));
            }
        }
        Ok(())
    }
}
