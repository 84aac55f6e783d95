//! Everything a handler needs, built once per cold start (or once by the local API) and
//! borrowed by every invocation.

use std::sync::Arc;

use crate::config::Config;
use crate::ports::{Clock, PushSender, Random, Signer};
use crate::store::Store;

#[derive(Clone)]
pub struct Ctx {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
    pub signer: Arc<dyn Signer>,
    pub push: Arc<dyn PushSender>,
}
