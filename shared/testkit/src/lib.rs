//! What the tests and the local API need and no Lambda may link: fixed clocks, repeatable
//! randomness, fixed DNS answers, recording push senders, the seed import and enrolment codes
//! for the operator tooling, DynamoDB Local tables, the store suite every store adapter passes, and the
//! model-based test of the store. The workspace test `no_lambda_links_test_or_local_code` keeps
//! it out of every function's dependencies.

pub mod dynamodb;
pub mod enrollment;
pub mod ports;
pub mod push;
pub mod queue;
pub mod seed;
pub mod store_model;
pub mod store_suite;

pub use ports::{CountingRandom, FixedClock, StaticResolver};
pub use push::{RecordedPush, RecordingPushSender, TeePushSender};
pub use queue::RecordingQueue;
