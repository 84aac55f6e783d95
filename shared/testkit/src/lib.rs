//! What the tests and the local API need and no Lambda may link: fixed clocks, repeatable
//! randomness, recording push senders. The workspace test `no_lambda_links_test_or_local_code`
//! keeps it out of every function's dependencies.

pub mod ports;
pub mod push;

pub use ports::{CountingRandom, FixedClock};
pub use push::{RecordedPush, RecordingPushSender, TeePushSender};
